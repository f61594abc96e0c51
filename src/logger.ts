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
    },
  }
}

export function createLogger(level: string, name?: string): Logger {
  return pino({ ...loggerOptions(level), ...(name ? { name } : {}) })
}

/** Removes the value of every `token` query parameter from a URL or path. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]')
}
