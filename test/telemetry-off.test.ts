import { createRequire } from 'node:module'
import t from 'tap'

// Whatever the shell running the tests has set: this file is about a process without an endpoint.
delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT
delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
const { stopTracing, tracingEnabled } = await import('../src/telemetry.js')
const { trace } = await import('@opentelemetry/api')

t.test('without an exporter endpoint tracing is off, and the SDK is not even loaded', async (t) => {
  t.equal(tracingEnabled, false)
  const loaded = Object.keys(createRequire(import.meta.url).cache)
  t.same(
    loaded.filter((path) => /@opentelemetry[/\\](sdk-node|instrumentation)|@fastify[/\\]otel/.test(path)),
    [],
    'no SDK or instrumentation module loaded',
  )
  t.equal(
    trace.getTracer('test').startActiveSpan('work', (span) => {
      span.end()
      return span.isRecording()
    }),
    false,
    "spans are the API's no-ops",
  )
  await t.resolves(stopTracing())
})
