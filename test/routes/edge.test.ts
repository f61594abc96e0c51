import fc from 'fast-check'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { nestedDeeperThan } from '../../src/json-depth.js'
import { AUTH, buildTestApp, DLR_TOKEN, testConfig } from '../helpers/index.js'

/**
 * What reaches the API before any route's logic: which address is the client (TRUST_PROXY), which id
 * a request gets (x-request-id), and how deep a JSON body may nest. See docs/configuration.md and
 * docs/api.md#request-ids.
 */

const REPORT = JSON.stringify({ results: [{ messageId: 'msg_edge', status: { groupId: 3, id: 5 } }] })
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('TRUST_PROXY', async (t) => {
  const allowed = '203.0.113.0/24'
  const report = async (app: Awaited<ReturnType<typeof buildTestApp>>, remoteAddress: string, forwardedFor?: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/infobip-dlr',
      remoteAddress,
      headers: { 'content-type': 'application/json', 'x-webhook-token': DLR_TOKEN, ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
      payload: REPORT,
    })
    return res.statusCode
  }

  t.test('a list of proxies: the client is the right-most X-Forwarded-For entry that is not one of them', async (t) => {
    const app = await buildTestApp(t, testConfig('edge-proxy', { TRUST_PROXY: '10.0.0.1, 192.0.2.0/28, 2001:db8::/32', DLR_ALLOWED_IPS: allowed }))
    t.equal(await report(app, '10.0.0.1', '203.0.113.5, 198.51.100.7'), 403, 'a forged left-most entry is not the client')
    t.equal(await report(app, '10.0.0.1', '198.51.100.7, 203.0.113.5'), 200, 'the entry the proxy added is')
    t.equal(await report(app, '10.0.0.1', '198.51.100.7, 203.0.113.5, 192.0.2.3'), 200, 'every trusted hop is skipped')
    t.equal(await report(app, '10.0.0.1', '203.0.113.5, 198.51.100.7, 192.0.2.3'), 403, 'but only trusted hops')
    t.equal(await report(app, '10.0.0.1'), 403, 'no header: the proxy itself is the client')
    t.equal(await report(app, '198.51.100.7', '203.0.113.5'), 403, 'an untrusted peer forging the header is judged by its own address')
    t.equal(await report(app, '203.0.113.9', '198.51.100.7'), 200, 'whatever the header it forges')
  })

  t.test('false (the default): the peer is the client', async (t) => {
    const config = testConfig('edge-noproxy', { DLR_ALLOWED_IPS: allowed })
    t.equal(config.TRUST_PROXY, 'false')
    const app = await buildTestApp(t, config)
    t.equal(await report(app, '10.0.0.1', '203.0.113.5'), 403)
    t.equal(await report(app, '203.0.113.9', '198.51.100.7'), 200)
  })

  t.test('true: any peer is believed, so the left-most entry is the client', async (t) => {
    const app = await buildTestApp(t, testConfig('edge-anyproxy', { TRUST_PROXY: 'true', DLR_ALLOWED_IPS: allowed }))
    t.equal(await report(app, '10.0.0.1', '203.0.113.5, 198.51.100.7'), 200)
    t.equal(await report(app, '10.0.0.1', '198.51.100.7, 203.0.113.5'), 403)
  })

  t.test('an entry that is no address or CIDR stops start-up naming TRUST_PROXY', async (t) => {
    for (const value of ['10.0.0.1,proxy.internal', '10.0.0.0/33', '10.0.0.0/8/1', 'loopback', 'yes']) {
      await t.rejects(
        buildApp(testConfig('edge-badproxy', { TRUST_PROXY: value }), { logger: false }),
        { name: 'ConfigError', message: /^Invalid configuration: TRUST_PROXY must be false, true or comma-separated IP addresses or CIDRs \(got "[^"\n]*"\)$/ },
        value,
      )
    }
  })
})

t.test('x-request-id', async (t) => {
  const app = await buildTestApp(t, testConfig('edge-reqid'))
  const get = (url: string, id?: string) => app.inject({ method: 'GET', url, headers: { ...AUTH, ...(id === undefined ? {} : { 'x-request-id': id }) } })

  t.test('a safe id is kept and sent back, on every answer', async (t) => {
    for (const id of ['a', 'abc-123_DEF.456', 'x'.repeat(64), '01JD3Q4W5X6Y7Z8A9B0C1D2E3F']) {
      t.equal((await get('/health', id)).headers['x-request-id'], id, `200 ${id.slice(0, 12)}`)
    }
    t.equal((await get('/nowhere', 'id-404')).headers['x-request-id'], 'id-404', '404')
    const unauthenticated = await app.inject({ method: 'GET', url: '/messages', headers: { 'x-request-id': 'id-401' } })
    t.equal(unauthenticated.statusCode, 401)
    t.equal(unauthenticated.headers['x-request-id'], 'id-401', '401')
    const invalid = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { ...AUTH, 'x-request-id': 'id-400', 'content-type': 'application/json' },
      payload: '{',
    })
    t.equal(invalid.statusCode, 400)
    t.equal(invalid.headers['x-request-id'], 'id-400', '400')
  })

  t.test('any other id is replaced by a fresh one', async (t) => {
    const unsafe = ['', 'has space', 'line\nbreak', 'quote"d', "it's", 'x'.repeat(65), 'emoji-😀', '{"level":60}', 'a/b', '%0a']
    const seen = new Set<string>()
    for (const id of unsafe) {
      const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': id } })
      const answered = String(res.headers['x-request-id'])
      t.match(answered, UUID, JSON.stringify(id))
      seen.add(answered)
    }
    const none = String((await get('/health')).headers['x-request-id'])
    t.match(none, UUID, 'no header: a fresh id')
    seen.add(none)
    t.equal(seen.size, unsafe.length + 1, 'each one new')
  })
})

t.test('JSON nested deeper than 32 levels is refused before it is parsed', async (t) => {
  const app = await buildTestApp(t, testConfig('edge-depth'))
  const msSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e6
  const post = async (url: string, payload: string, headers: Record<string, string> = {}) => {
    const started = process.hrtime.bigint()
    const res = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload })
    return { res, ms: msSince(started) }
  }
  const MB4 = 4 * 1024 * 1024
  const routes: [string, Record<string, string>, number][] = [
    ['/messages', AUTH, 64 * 1024],
    ['/messages/batch', AUTH, MB4],
    [`/infobip-dlr?token=${DLR_TOKEN}`, {}, MB4],
  ]
  const deep = { statusCode: 400, error: 'Bad Request', message: 'body is nested deeper than 32 levels' }

  t.test('4 MB of brackets answers 400 at once, on every JSON route', async (t) => {
    const half = (limit: number) => Math.floor((limit - 16) / 2)
    const brackets = (limit: number) => '['.repeat(half(limit)) + ']'.repeat(half(limit))
    // What parsing first would cost, on this machine under its present load: about a second.
    const started = process.hrtime.bigint()
    JSON.parse(brackets(MB4))
    const parseMs = msSince(started)
    for (const [url, headers, limit] of routes) {
      // The route's first request loads its hooks' Redis scripts: not what is timed here.
      await post(url, '{}', headers)
      const balanced = await post(url, brackets(limit), headers)
      t.same(balanced.res.json(), deep, `${url}: ${half(limit)} deep`)
      if (limit === MB4) t.ok(balanced.ms < parseMs / 3, `${url}: answered in ${balanced.ms.toFixed(0)} ms (JSON.parse alone: ${parseMs.toFixed(0)} ms)`)
      // Never closed, so not JSON at all: only a check before parsing can find the depth.
      const unclosed = await post(url, '{"a":'.repeat(33), headers)
      t.same(unclosed.res.json(), deep, `${url}: unclosed`)
    }
  })

  t.test('32 levels pass; brackets inside strings are text, not nesting', async (t) => {
    const nested = (n: number) => '['.repeat(n) + ']'.repeat(n)
    const ok = await post('/messages', JSON.stringify({ to: '+41793026123', text: `${'['.repeat(40)}{{{{ \\"[[[[ ${'{'.repeat(40)}` }), AUTH)
    t.equal(ok.res.statusCode, 202, 'a text full of brackets is accepted')
    const report = await post(
      `/infobip-dlr?token=${DLR_TOKEN}`,
      `{"results":[{"messageId":"${'['.repeat(40)}\\"${'{'.repeat(40)}\\\\","status":{"groupId":3,"id":5}}]}`,
    )
    t.same(report.res.json(), { received: 1 })
    // 31 arrays inside the body object and its `results` array: 33 levels in all, one too many.
    const tooDeep = await post(`/infobip-dlr?token=${DLR_TOKEN}`, `{"results":[${nested(31)}]}`)
    t.same(tooDeep.res.json(), deep)
    const deepest = await post(`/infobip-dlr?token=${DLR_TOKEN}`, `{"results":[${nested(30)}]}`)
    t.same(deepest.res.json(), { received: 1 }, '32 levels are accepted (the worker skips a report that is no report)')
    // The escaped backslash ends the string: the brackets after it are nesting again.
    const escaped = await post('/messages/batch', `{"messages":[{"to":"\\\\"},${nested(31)}]}`, AUTH)
    t.same(escaped.res.json(), deep)
  })

  t.test("Fastify's protection against prototype poisoning stays", async (t) => {
    // A report may hold anything, so only the parser stands between these and a 200.
    for (const report of ['{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}']) {
      const { res } = await post(`/infobip-dlr?token=${DLR_TOKEN}`, `{"results":[${report}]}`)
      t.match(res.json(), { statusCode: 400, message: /not valid JSON/ }, report)
    }
    t.equal((await post('/messages', '', AUTH)).res.statusCode, 400, 'an empty body')
  })
})

t.test('property: the scan agrees with the depth of what JSON.parse builds', async (t) => {
  const depth = (value: unknown): number => (value !== null && typeof value === 'object' ? 1 + Math.max(0, ...Object.values(value).map(depth)) : 0)
  const key = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a', ' ', '\u2028', '😀') })
  const value = fc.letrec<{ node: unknown }>((tie) => ({
    node: fc.oneof({ depthSize: 'small', maxDepth: 40 }, key, fc.integer(), fc.constant(null), fc.array(tie('node')), fc.dictionary(key, tie('node'))),
  })).node
  fc.assert(
    fc.property(value, fc.nat(40), fc.boolean(), (v, limit, pretty) => {
      const text = JSON.stringify(v, null, pretty ? 2 : undefined)
      return nestedDeeperThan(text, limit) === depth(JSON.parse(text)) > limit
    }),
    { numRuns: 2000 },
  )
  t.pass('checked')
})
