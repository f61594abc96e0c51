/** Domain errors with a stable code and the HTTP status they map to; the error handler uses both. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly code = 'HTTP_ERROR',
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

/** A field that passed the schema but not the rules behind it (phone number, segments, sendAt). */
export class FieldError extends HttpError {
  constructor(field: string, message: string) {
    super(400, `${field} ${message}`, 'FST_ERR_VALIDATION')
  }
}

/** Redis could not be reached: nothing was stored, the client may retry. */
export class UnavailableError extends HttpError {
  constructor(message = 'Service temporarily unavailable: storage is unreachable, nothing was stored') {
    super(503, message, 'STORE_UNAVAILABLE')
  }
}

const REDIS_DOWN = /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Command timed out|Reached the max retries|Stream isn't writeable|connect ETIMEDOUT|LOADING/i

/** True for the errors ioredis raises when Redis is unreachable. */
export function isRedisUnavailable(error: unknown): boolean {
  const e = error as { name?: string; message?: string; code?: string }
  return e?.name === 'MaxRetriesPerRequestError' || REDIS_DOWN.test(e?.message ?? '') || REDIS_DOWN.test(e?.code ?? '')
}
