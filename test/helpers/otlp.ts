import { once } from 'node:events'
import { createServer } from 'node:http'

/**
 * A local OTLP/HTTP receiver (JSON encoding, OTEL_EXPORTER_OTLP_PROTOCOL=http/json): what an
 * OpenTelemetry collector would get from the service's processes, kept as a flat list of spans.
 */

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } }
interface KeyValue {
  key: string
  value: AnyValue
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  startTimeUnixNano: string
  attributes?: KeyValue[]
  events?: { name: string; attributes?: KeyValue[] }[]
  links?: { attributes?: KeyValue[] }[]
}
interface TracesRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { scope?: { name?: string }; spans?: OtlpSpan[] }[] }[]
}

export interface ReceivedSpan {
  traceId: string
  spanId: string
  parentSpanId: string | undefined
  name: string
  kind: 'internal' | 'server' | 'client' | 'producer' | 'consumer' | 'unspecified'
  start: bigint
  service: string
  scope: string
  attributes: Record<string, unknown>
  /** Every attribute value of the span, its events, links and resource, as text: what a privacy check reads. */
  texts: string[]
}

const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const

function valueOf(value: AnyValue): unknown {
  if (value.stringValue !== undefined) return value.stringValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.boolValue !== undefined) return value.boolValue
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(valueOf)
  return undefined
}

const record = (attributes: KeyValue[] = []) => Object.fromEntries(attributes.map((a) => [a.key, valueOf(a.value)]))
const texts = (attributes: KeyValue[] = []) => attributes.flatMap((a) => [a.key, JSON.stringify(a.value)])

export async function startOtlpReceiver() {
  const spans: ReceivedSpan[] = []
  const server = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => (body += chunk))
    request.on('end', () => {
      if (request.url === '/v1/traces') {
        for (const rs of (JSON.parse(body) as TracesRequest).resourceSpans ?? []) {
          const resource = record(rs.resource?.attributes)
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId || undefined,
                name: s.name,
                kind: KINDS[s.kind] ?? 'unspecified',
                start: BigInt(s.startTimeUnixNano),
                service: String(resource['service.name']),
                scope: ss.scope?.name ?? '',
                attributes: record(s.attributes),
                texts: [
                  ...texts(s.attributes),
                  ...(s.events ?? []).flatMap((e) => [e.name, ...texts(e.attributes)]),
                  ...(s.links ?? []).flatMap((l) => texts(l.attributes)),
                  ...texts(rs.resource?.attributes),
                ],
              })
            }
          }
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** The spans of one trace as an indented tree, children in start order: `name [kind, service] key=value …`. */
export function renderTree(spans: ReceivedSpan[], traceId: string, shown: readonly string[] = []): string {
  const trace = spans.filter((s) => s.traceId === traceId).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
  const ids = new Set(trace.map((s) => s.spanId))
  const lines: string[] = []
  const visit = (span: ReceivedSpan, depth: number) => {
    const attributes = shown.filter((k) => span.attributes[k] !== undefined).map((k) => `${k}=${String(span.attributes[k])}`)
    lines.push(`${'  '.repeat(depth)}${span.name} [${span.kind}, ${span.service}]${attributes.length > 0 ? ` ${attributes.join(' ')}` : ''}`)
    for (const child of trace.filter((s) => s.parentSpanId === span.spanId)) visit(child, depth + 1)
  }
  for (const root of trace.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId))) visit(root, 0)
  return lines.join('\n')
}

/** The span and its ancestors, nearest first. */
export function ancestors(spans: ReceivedSpan[], span: ReceivedSpan): ReceivedSpan[] {
  const chain: ReceivedSpan[] = []
  for (let s = spans.find((p) => p.spanId === span.parentSpanId); s !== undefined;) {
    chain.push(s)
    const parentId = s.parentSpanId
    s = spans.find((p) => p.spanId === parentId)
  }
  return chain
}
