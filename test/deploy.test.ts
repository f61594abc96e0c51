import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Service } from 'kubernetes-models/v1/Service'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { ROOT } from './helpers/index.js'

/**
 * The Kubernetes manifests in deploy/ (docs/operations.md#autoscaling), checked against the
 * Kubernetes and KEDA schemas, and strictly: a field the schema does not know (a typo) fails too.
 */

const DIR = join(ROOT, 'deploy')
const MODELS: Record<string, { prototype: { validate(): void } }> = {
  'apps/v1 Deployment': Deployment,
  'v1 Service': Service,
  'v1 ConfigMap': ConfigMap,
  'keda.sh/v1alpha1 ScaledObject': ScaledObject,
}

interface Manifest {
  file: string
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  spec?: Record<string, unknown>
  data?: Record<string, string>
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
const manifests: Manifest[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
    t.same(doc.errors, [], `${file} is valid YAML`)
    return { ...(doc.toJS() as Omit<Manifest, 'file'>), file }
  }),
)
const named = (kind: string, name: string) => manifests.find((m) => m.kind === kind && m.metadata.name === name)

/**
 * Validates `document` with the model's schema, and returns the paths of the fields the schema never
 * looked at. The generated validators read each property they know and enumerate the keys of maps
 * (labels, ConfigMap data, KEDA trigger metadata), so a key that was neither read nor enumerated is
 * one the schema does not have.
 */
function validateStrictly(model: { prototype: { validate(): void } }, document: object): string[] {
  const read = new WeakMap<object, Set<PropertyKey>>()
  const enumerated = new WeakSet<object>()
  const proxies = new WeakMap<object, object>()
  const watch = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value
    let proxy = proxies.get(value)
    if (!proxy) {
      read.set(value, new Set())
      proxy = new Proxy(value, {
        get(target, key, receiver) {
          read.get(target)!.add(key)
          return watch(Reflect.get(target, key, receiver))
        },
        has(target, key) {
          read.get(target)!.add(key)
          return Reflect.has(target, key)
        },
        ownKeys(target) {
          enumerated.add(target)
          return Reflect.ownKeys(target)
        },
      })
      proxies.set(value, proxy)
    }
    return proxy
  }
  model.prototype.validate.call(watch(document))
  const unknown: string[] = []
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== 'object') return
    if (Array.isArray(value)) return value.forEach((item, i) => walk(item, `${path}/${i}`))
    for (const [key, item] of Object.entries(value)) {
      if (!enumerated.has(value) && !read.get(value)?.has(key)) unknown.push(`${path}/${key}`)
      walk(item, `${path}/${key}`)
    }
  }
  walk(document, '')
  return unknown
}

t.test('every document validates against its schema, with no unknown field', async (t) => {
  t.ok(manifests.length >= 5, `${manifests.length} documents`)
  for (const { file, ...document } of manifests) {
    const what = `${file}: ${document.kind} ${document.metadata?.name}`
    const model = MODELS[`${document.apiVersion} ${document.kind}`]
    if (!model) {
      t.fail(`${what}: no schema for ${document.apiVersion} ${document.kind}`)
      continue
    }
    let unknown: string[] = []
    t.doesNotThrow(() => (unknown = validateStrictly(model, document)), what)
    t.same(unknown, [], `${what}: no field the schema does not know`)
  }
})

t.test('the strict check catches a misspelt field and a wrong type', async (t) => {
  const api = structuredClone(named('Deployment', 'sms-api')!)
  const { file: _file, ...document } = api
  const container = (document.spec as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec.containers[0]!
  container.readinesProbe = container.readinessProbe
  t.same(validateStrictly(Deployment, document), ['/spec/template/spec/containers/0/readinesProbe'])
  const scaled = structuredClone(named('ScaledObject', 'sms-worker')!)
  const { file: _scaledFile, ...scaledDocument } = scaled
  ;(scaledDocument.spec as { maxReplicaCount: unknown }).maxReplicaCount = 'twenty'
  t.throws(() => validateStrictly(ScaledObject, scaledDocument), /maxReplicaCount must be integer/)
})

t.test('kustomization.yaml lists every manifest', async (t) => {
  const kustomization = parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as { resources: string[] }
  t.same([...kustomization.resources].sort(), [...files].sort())
})

t.test('the API: probes on /ready and /health, a Service in front', async (t) => {
  const api = named('Deployment', 'sms-api')!
  const spec = api.spec as { selector: { matchLabels: Record<string, string> }; template: { spec: { containers: Record<string, unknown>[] } } }
  const container = spec.template.spec.containers[0]!
  t.match(container.readinessProbe, { httpGet: { path: '/ready', port: 'http' } })
  t.match(container.livenessProbe, { httpGet: { path: '/health', port: 'http' } })
  const service = named('Service', 'sms-api')!
  t.same((service.spec as { selector: unknown }).selector, spec.selector.matchLabels, 'the Service selects the API pods')
  t.match((service.spec as { ports: unknown[] }).ports, [{ targetPort: 'http' }])
})

t.test("KEDA scales the worker Deployment on the send queue's waiting jobs", async (t) => {
  const scaled = named('ScaledObject', 'sms-worker')!
  const spec = scaled.spec as { scaleTargetRef: { name: string }; minReplicaCount: number; triggers: { type: string; metadata: Record<string, string> }[] }
  t.ok(named('Deployment', spec.scaleTargetRef.name), 'the target Deployment exists')
  t.ok(spec.minReplicaCount >= 1, 'never scaled to zero: the dlr and callback workers run in the same pods')
  t.match(spec.triggers, [{ type: 'prometheus', metadata: { query: /sms_queue_jobs\{queue="send",state="waiting"\}/ } }])
})

t.test('secrets come from the Secret sms-secrets, never inline', async (t) => {
  const SECRET = /API_KEY|TOKEN|SECRET|PASSWORD|BULL_BOARD_USER|REDIS_URL/
  t.notOk(
    manifests.some((m) => m.kind === 'Secret'),
    'no Secret with values is kept in the repository',
  )
  for (const config of manifests.filter((m) => m.kind === 'ConfigMap')) {
    t.same(
      Object.keys(config.data ?? {}).filter((k) => SECRET.test(k)),
      [],
      `${config.metadata.name} holds no secret`,
    )
  }
  for (const deployment of manifests.filter((m) => m.kind === 'Deployment')) {
    const containers = (deployment.spec as { template: { spec: { containers: { env?: { name: string; value?: string; valueFrom?: unknown }[] }[] } } }).template
      .spec.containers
    for (const variable of containers.flatMap((c) => c.env ?? []).filter((v) => SECRET.test(v.name))) {
      t.match(variable, { valueFrom: { secretKeyRef: { name: 'sms-secrets', key: variable.name } } }, `${deployment.metadata.name}: ${variable.name}`)
      t.notOk('value' in variable, `${deployment.metadata.name}: ${variable.name} has no inline value`)
    }
  }
})
