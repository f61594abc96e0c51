import { subscribe } from 'node:diagnostics_channel'
import { once } from 'node:events'
import { createServer, type IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { ancestors, renderTree, startOtlpReceiver, type ReceivedSpan } from './helpers/otlp.js'

// Tracing starts as the entry points start it: src/telemetry.ts, imported before the modules it
// instruments, with the standard variables pointing at a local OTLP receiver.
const receiver = await startOtlpReceiver()
Object.assign(process.env, {
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_BSP_SCHEDULE_DELAY: '50',
  OTEL_SERVICE_NAME: 'sms-api',
  // Redis command spans are off unless asked for (docs/tracing.md#cost): asked for here, to check what they hold.
  OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'fastify,undici,ioredis',
})
const { stopTracing, tracingEnabled } = await import('../src/telemetry.js')
const { trace } = await import('@opentelemetry/api')
const { pino } = await import('pino')
const { loggerOptions } = await import('../src/logger.js')
const helpers = await import('./helpers/index.js')
const { loadConfig } = await import('../src/config.js')

t.teardown(async () => {
  await stopTracing()
  await receiver.close()
})

const TEXT = 'Your secret code is 482916'
const TO = '+41 79 302 67 27'
const DIGITS = '41793026727'
const CALLBACK_QUERY_SECRET = 'client-secret-8e1f'
/** What the trees below show of each span. */
const SHOWN = ['sms.message_id', 'sms.tenant', 'sms.status', 'sms.infobip_status', 'sms.result', 'sms.report_count', 'url.full', 'db.query.text']

/** Request headers as servers in this process receive them (the simulator's and the API's). */
const received: { url: string; headers: IncomingMessage['headers'] }[] = []
subscribe('http.server.request.start', (message) => {
  const { request } = message as { request: IncomingMessage }
  received.push({ url: request.url ?? '', headers: request.headers })
})

/** A client's callback receiver, its URL carrying a secret of the client's in the query string. */
async function callbackReceiver(t: Test) {
  const statuses: string[] = []
  const server = createServer((request, response) => {
    let body = ''
    request.on('data', (chunk: Buffer) => (body += chunk.toString()))
    request.on('end', () => {
      statuses.push((JSON.parse(body) as { status: string }).status)
      response.writeHead(200).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}/sms-status?secret=${CALLBACK_QUERY_SECRET}`, statuses }
}

async function send(t: Test, apiUrl: string, callbackUrl: string): Promise<string> {
  const res = await fetch(`${apiUrl}/messages`, {
    method: 'POST',
    headers: { ...helpers.AUTH, 'content-type': 'application/json' },
    body: JSON.stringify({ to: TO, text: TEXT, callbackUrl }),
  })
  t.equal(res.status, 202, 'message accepted')
  return ((await res.json()) as { id: string }).id
}

const find = (spans: ReceivedSpan[], where: (s: ReceivedSpan) => boolean, what: string) => helpers.waitFor(() => spans.find(where), 10_000, what)

/** Waits for the spans of one message's two traces, the send's and the report's, down to the DELIVERED callback's request. */
async function traces(id: string) {
  const spans = receiver.spans
  const handler = await find(spans, (s) => s.name === 'handler' && s.attributes['sms.message_id'] === id, 'the POST /messages handler span')
  const delivered = await find(
    spans,
    (s) => s.name === 'status change' && s.attributes['sms.message_id'] === id && s.attributes['sms.status'] === 'DELIVERED',
    'the DELIVERED status change',
  )
  await find(
    spans,
    (s) => s.traceId === delivered.traceId && s.kind === 'client' && String(s.attributes['url.full']).includes('/sms-status'),
    "the DELIVERED callback's request",
  )
  // Whatever ends after the callback's request (the job's own span) has had time to be exported too.
  await helpers.waitFor(() => spans.some((s) => s.traceId === delivered.traceId && s.name === 'process callback'), 10_000, 'the callback job span')
  return { spans, sendTrace: handler.traceId, reportTrace: delivered.traceId }
}

function child(t: Test, spans: ReceivedSpan[], parent: ReceivedSpan, where: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.find((s) => s.parentSpanId === parent.spanId && where(s))
  t.ok(found, `${what} is a child of ${parent.name}`)
  return found!
}

function descendant(t: Test, spans: ReceivedSpan[], root: ReceivedSpan, where: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.find((s) => where(s) && ancestors(spans, s).includes(root))
  t.ok(found, `${what} is in ${root.name}'s tree`)
  return found!
}

t.test('tracing is on: an exporter endpoint is set', async (t) => {
  t.equal(tracingEnabled, true)
})

t.test("one message's life, API and workers in this process: two traces, linked by sms.message_id", async (t) => {
  const callbacks = await callbackReceiver(t)
  const { apiUrl, sim } = await helpers.startSystem(t, 'tracing')
  const id = await send(t, apiUrl, callbacks.url)
  await helpers.waitFor(() => callbacks.statuses.includes('DELIVERED'), 15_000, 'the DELIVERED callback')
  const { spans, sendTrace, reportTrace } = await traces(id)
  t.not(sendTrace, reportTrace, 'the report belongs to a trace of its own')
  t.comment(`send trace:\n${renderTree(spans, sendTrace, SHOWN)}`)
  t.comment(`report trace:\n${renderTree(spans, reportTrace, SHOWN)}`)
  const inTrace = (traceId: string) => spans.filter((s) => s.traceId === traceId)

  // The send: POST /messages → the send job → Infobip → PENDING → its callback.
  const sendSpans = inTrace(sendTrace)
  const request = sendSpans.find((s) => s.name === 'POST /messages')!
  t.match(request, { kind: 'server', parentSpanId: undefined, attributes: { 'http.route': '/messages', 'http.response.status_code': 202 } })
  const handler = child(t, sendSpans, request, (s) => s.name === 'handler', 'the handler')
  t.match(handler.attributes, { 'sms.message_id': id, 'sms.tenant': 'default' })
  const added = descendant(t, sendSpans, request, (s) => s.name === 'add send.send' && s.kind === 'producer', 'the send job added')
  const processed = child(t, sendSpans, added, (s) => s.name === 'process send' && s.kind === 'consumer', 'the send job')
  t.match(processed.attributes, { 'sms.message_id': id, 'sms.tenant': 'default' })
  const infobip = child(t, sendSpans, processed, (s) => s.kind === 'client' && s.attributes['url.full'] === `${sim.url}/sms/3/messages`, 'the Infobip request')
  t.match(infobip.attributes, { 'http.request.method': 'POST', 'http.response.status_code': 200 })
  const submitted = received.find((r) => r.url === '/sms/3/messages')
  t.equal(submitted?.headers.traceparent, `00-${sendTrace}-${infobip.spanId}-01`, 'Infobip gets the traceparent of its request span')
  const pending = descendant(t, sendSpans, processed, (s) => s.name === 'status change', 'the PENDING status change')
  t.match(pending.attributes, { 'sms.message_id': id, 'sms.status': 'PENDING', 'sms.infobip_status': 'PENDING_ACCEPTED', 'sms.result': 'applied' })
  t.equal(ancestors(sendSpans, pending)[0]?.name, 'transition')
  const pendingCallback = descendant(t, sendSpans, processed, (s) => s.name === 'process callback', 'the PENDING callback job')
  t.match(pendingCallback.attributes, { 'sms.message_id': id, 'sms.status': 'PENDING' })
  const redis = sendSpans.filter((s) => s.attributes['db.system.name'] === 'redis')
  t.ok(redis.length > 0, 'Redis commands are spans')
  t.same(
    redis.filter((s) => !/^[a-z]+$/.test(String(s.attributes['db.query.text']))),
    [],
    'a Redis span names its command, never its arguments',
  )

  // The report: POST /infobip-dlr → the dlr job → DELIVERED → its callback.
  const reportSpans = inTrace(reportTrace)
  const dlrRequest = reportSpans.find((s) => s.name === 'POST /infobip-dlr')!
  t.match(dlrRequest, { kind: 'server', parentSpanId: undefined, attributes: { 'url.path': '/infobip-dlr' } })
  t.match(child(t, reportSpans, dlrRequest, (s) => s.name === 'handler', 'the handler').attributes, { 'sms.report_count': 1 })
  t.notOk(received.find((r) => r.url.startsWith('/infobip-dlr'))?.headers.traceparent, 'the report arrives without a trace of its own, as from Infobip')
  const dlrJob = descendant(t, reportSpans, dlrRequest, (s) => s.name === 'process dlr' && s.kind === 'consumer', 'the dlr job')
  t.match(dlrJob.attributes, { 'sms.message_id': id, 'sms.report_count': 1 })
  const transition = child(t, reportSpans, dlrJob, (s) => s.name === 'transition', 'the transition')
  const delivered = child(t, reportSpans, transition, (s) => s.name === 'status change', 'the DELIVERED status change')
  t.match(delivered.attributes, { 'sms.message_id': id, 'sms.status': 'DELIVERED', 'sms.infobip_status': 'DELIVERED_TO_HANDSET', 'sms.tenant': 'default' })
  const callbackAdded = child(t, reportSpans, transition, (s) => s.name === 'add callback.callback', 'the callback job added')
  const callbackJob = child(t, reportSpans, callbackAdded, (s) => s.name === 'process callback', 'the callback job')
  const callbackRequest = child(t, reportSpans, callbackJob, (s) => s.kind === 'client' && s.attributes['url.full'] !== undefined, 'the callback request')
  t.match(callbackRequest.attributes, {
    'url.full': callbacks.url.replace(CALLBACK_QUERY_SECRET, 'REDACTED'),
    'url.query': 'secret=REDACTED',
    'http.response.status_code': 200,
  })

  // Nothing that identifies the recipient or says what was sent, and no secret.
  const leaks = spans.flatMap((s) =>
    s.texts
      .filter((x) => x.includes(TEXT) || x.includes(DIGITS) || x.includes(helpers.DLR_TOKEN) || x.includes(CALLBACK_QUERY_SECRET))
      .map((x) => `${s.name}: ${x}`),
  )
  t.same(leaks, [], 'no span attribute holds the text, the number, the DLR token or a callback URL secret')
})

t.test('across processes: the send job runs in a worker process, in the trace of the request that added it', async (t) => {
  const callbacks = await callbackReceiver(t)
  const sim = await helpers.startSimulator(t, helpers.testConfig('tracing-procs-sim'))
  const env = helpers.testEnv('tracing-procs', { INFOBIP_BASE_URL: sim.url })
  const app = await helpers.buildTestApp(t, loadConfig(env))
  const apiUrl = await app.listen({ port: 0, host: '127.0.0.1' })
  const worker = helpers.spawnWorker(t, {
    ...env,
    PUBLIC_BASE_URL: apiUrl,
    LOG_LEVEL: 'info',
    WORKER_QUEUES: 'send,dlr,callback',
    OTEL_SERVICE_NAME: 'sms-worker',
  })
  t.teardown(() => helpers.cleanup(env.KEY_PREFIX!))
  await helpers.workerReady(worker)

  const id = await send(t, apiUrl, callbacks.url)
  await helpers.waitFor(() => callbacks.statuses.includes('DELIVERED'), 15_000, 'the DELIVERED callback')
  const { spans, sendTrace, reportTrace } = await traces(id)
  t.comment(`send trace:\n${renderTree(spans, sendTrace, SHOWN)}`)
  t.comment(`report trace:\n${renderTree(spans, reportTrace, SHOWN)}`)

  const added = spans.find((s) => s.traceId === sendTrace && s.name === 'add send.send')!
  t.equal(added.service, 'sms-api')
  const processed = spans.find((s) => s.parentSpanId === added.spanId && s.name === 'process send')
  t.match(processed, { service: 'sms-worker', attributes: { 'sms.message_id': id } }, "the worker's job span is a child of the API's producer span")
  // The API exports its spans on its own schedule, which may come after the worker's.
  const dlrAdded = await find(spans, (s) => s.traceId === reportTrace && s.name === 'add dlr.dlr', "the API's dlr job span")
  t.match(
    spans.find((s) => s.parentSpanId === dlrAdded.spanId && s.name === 'process dlr'),
    { service: 'sms-worker' },
  )

  // The worker's log lines name the trace and span they were written in.
  const submitted = (worker as typeof worker & { output: string }).output
    .split('\n')
    .filter((line) => line.includes('"submitted to infobip"'))
    .map((line) => JSON.parse(line) as { trace_id?: string; span_id?: string })
  t.match(submitted, [{ trace_id: sendTrace, span_id: processed?.spanId }], "the send's log line carries its trace and span ids")
})

t.test('log lines carry trace_id and span_id inside a span, and nothing outside', async (t) => {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>)
      done()
    },
  })
  const log = pino(loggerOptions('info'), sink)
  log.info({ queue: 'send' }, 'outside')
  const ids = trace.getTracer('test').startActiveSpan('work', (span) => {
    log.info({ queue: 'send' }, 'inside')
    span.end()
    return span.spanContext()
  })
  t.notOk('trace_id' in lines[0]!, 'no trace id outside a span')
  t.match(lines[1], { msg: 'inside', queue: 'send', trace_id: ids.traceId, span_id: ids.spanId, trace_flags: '01' })
})
