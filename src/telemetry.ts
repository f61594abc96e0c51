import { createRequire } from 'node:module'
import type * as FastifyOtel from '@fastify/otel'
import type * as IORedisOtel from '@opentelemetry/instrumentation-ioredis'
import type * as UndiciOtel from '@opentelemetry/instrumentation-undici'
import type * as SdkNode from '@opentelemetry/sdk-node'
import { redactQuery } from './tracing.js'

/**
 * Tracing (docs/tracing.md): the OpenTelemetry SDK for this process, configured by the standard
 * OTEL_* variables, which the SDK reads itself. Every entry point imports this module first, so
 * that it runs before anything else is loaded.
 *
 * Tracing is on when an exporter endpoint is set. Otherwise the SDK is not even loaded (it takes
 * most of a second to), and the service's calls to `@opentelemetry/api` are its no-ops: there is
 * no other code path for "off".
 */
const env = process.env
export const tracingEnabled = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && env.OTEL_SDK_DISABLED !== 'true'

const require = createRequire(import.meta.url)

/** Paths of no interest that are called all the time (probes, scrapes, the dashboard's assets), and the built-in simulator's (see below). */
const UNTRACED = /^\/(health|ready|metrics|docs|admin\/queues|sms\/|_sim\/)/

const sdk = tracingEnabled ? startSdk() : undefined

/** Exports what is still buffered; the entry points call it last when they close. */
export async function stopTracing(): Promise<void> {
  await sdk?.shutdown()
}

/**
 * The instrumentations in use: OTEL_NODE_ENABLED_INSTRUMENTATIONS (the standard list, e.g.
 * `fastify,undici,ioredis`) when set; else the HTTP ones. A span per Redis command (ioredis) is a
 * dozen more spans per message and a tenth of the throughput (docs/tracing.md#cost): on request only.
 */
function enabled(name: 'fastify' | 'undici' | 'ioredis'): boolean {
  const list = env.OTEL_NODE_ENABLED_INSTRUMENTATIONS
  if (list)
    return list
      .split(',')
      .map((s) => s.trim())
      .includes(name)
  return name !== 'ioredis'
}

function startSdk(): SdkNode.NodeSDK {
  const { NodeSDK } = require('@opentelemetry/sdk-node') as typeof SdkNode
  const { FastifyOtelInstrumentation } = require('@fastify/otel') as typeof FastifyOtel
  const { IORedisInstrumentation } = require('@opentelemetry/instrumentation-ioredis') as typeof IORedisOtel
  const { UndiciInstrumentation } = require('@opentelemetry/instrumentation-undici') as typeof UndiciOtel
  const named = env.OTEL_SERVICE_NAME || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '')
  const sdk = new NodeSDK({
    ...(named ? {} : { serviceName: 'sms-delivery-service' }),
    // Traces only: metrics are Prometheus' (/metrics), logs are pino's on stdout with the trace ids.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      enabled('fastify') &&
        new FastifyOtelInstrumentation({
          registerOnInitialization: true,
          // A request span and its handler's, which also runs the handler in the request's context
          // however its body arrived; a span per lifecycle hook would double the cost.
          instrumentHooks: false,
          lifecycleHook(span, { hookName }) {
            // Named after the plugin around an anonymous handler by default, which misleads.
            if (hookName === 'handler') span.updateName('handler')
          },
          // The simulator's routes stand in for Infobip, which neither continues our traces nor sends
          // its own: untraced, a report's trace in development looks as it will in production.
          ignorePaths: ({ url }) => UNTRACED.test(url),
          requestHook(span, request) {
            span.updateName(`${request.method} ${request.routeOptions.url ?? ''}`.trim())
            // Fastify's `url.path` is the URL with its query string, where /infobip-dlr has its token.
            span.setAttribute('url.path', request.url.split('?')[0]!)
          },
        }),
      new IORedisInstrumentation({
        // The command's name only: its arguments are keys, numbers and message texts.
        dbStatementSerializer: (command) => command,
      }),
      new UndiciInstrumentation({
        // Calls outside any request or job (a client of ours without tracing) are not worth a trace of their own.
        requireParentforSpans: true,
        startSpanHook(request) {
          if (!request.path.includes('?')) return {}
          const url = redactQuery(new URL(request.path, request.origin).toString())
          return { 'url.full': url, 'url.query': url.slice(url.indexOf('?') + 1) }
        },
      }),
    ].filter((instrumentation) => instrumentation !== false),
  })
  sdk.start()
  // ioredis is CommonJS, imported by ESM: only a require() goes through the instrumentation's hook.
  // Loaded here, before anything imports it, the one copy that every import shares is patched.
  require('ioredis')
  return sdk
}
