import { isSpanContextValid, trace } from '@opentelemetry/api'
import { pino, type Logger, type LoggerOptions } from 'pino'
import { maskPhone } from './domain/phone.js'

/**
 * Paths that never reach a log line in clear (docs/operations.md#logs): credentials, the DLR token, message text.
 * Phone numbers are masked to their last four digits instead of removed.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-webhook-token"]',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  'authorization',
  'apiKey',
  'token',
  'text',
  '*.text',
  'password',
]

const PHONE_KEYS = new Set(['to', 'destination', 'from'])

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    mixin: traceIds,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    formatters: {
      log(object) {
        for (const key of PHONE_KEYS) {
          const value = object[key]
          if (typeof value === 'string' && /^\+?\d{5,}$/.test(value)) object[key] = maskPhone(value.replace('+', ''))
        }
        return object
      },
    },
    serializers: {
      req(request: { method: string; url: string; id: string; ip?: string }) {
        return { method: request.method, url: redactUrl(request.url), id: request.id, remoteAddress: request.ip }
      },
      err: serializeError,
      error: serializeError,
    },
  }
}

/**
 * A line logged inside a traced request or job names its trace and span (docs/tracing.md#logs).
 * With tracing off there is never an active span: one lookup, nothing added. (pino merges the
 * line's fields into what this returns, so it is a new object every time.)
 */
function traceIds(): Record<string, string> {
  const span = trace.getActiveSpan()
  if (!span) return {}
  const ids = span.spanContext()
  if (!isSpanContextValid(ids)) return {}
  return { trace_id: ids.traceId, span_id: ids.spanId, trace_flags: `0${ids.traceFlags & 1}` }
}

export function createLogger(level: string, name?: string): Logger {
  return pino({ ...loggerOptions(level), ...(name ? { name } : {}) })
}

const HIDDEN = '[redacted]'
/** Deeper than any error worth reading; what an error holds below that is left out. */
const MAX_ERROR_DEPTH = 8

/**
 * pino's error serializer, without what an error may carry of the data it was handling
 * (docs/operations.md#logs): ioredis gives every Redis error `command: { name, args }`, and the
 * arguments are keys, phone numbers and message texts. Only the command's name is kept. `args` and
 * `argv` go wherever they are: on the error, on the errors inside it (an AggregateError's, BullMQ's,
 * a MULTI's), on plain objects it holds. A string or a number passes as it is.
 */
export function serializeError(value: unknown): unknown {
  return scrub(value, 0, new Set())
}

function scrub(value: unknown, depth: number, ancestors: Set<object>): unknown {
  if (value === null || typeof value !== 'object') return value
  if (ancestors.has(value)) return '[circular]'
  if (depth >= MAX_ERROR_DEPTH) return '[too deep]'
  ancestors.add(value)
  // type, message and stack (with the causes'), aggregateErrors, and every enumerable property.
  const source: object = value instanceof Error ? pino.stdSerializers.err(value) : value
  let copy: unknown
  if (Array.isArray(source)) copy = source.map((item) => scrub(item, depth + 1, ancestors))
  else {
    const fields: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(source)) {
      if (key === 'args' || key === 'argv') fields[key] = HIDDEN
      else if (key === 'command' && item !== null && typeof item === 'object') fields[key] = { name: (item as { name?: unknown }).name, args: HIDDEN }
      else fields[key] = scrub(item, depth + 1, ancestors)
    }
    copy = fields
  }
  ancestors.delete(value)
  return copy
}

/** Removes the value of every `token` query parameter from a URL or path. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]')
}
