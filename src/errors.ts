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

const REDIS_DOWN =
  /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Command timed out|Reached the max retries|Stream isn't writeable|connect ETIMEDOUT|LOADING|READONLY|NOREPLICAS|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|Too many Cluster redirections|None of startup nodes|Failed to refresh slots cache|Cluster isn't ready|^(MOVED|ASK) \d/i

/**
 * True for the errors ioredis raises when Redis is unreachable, a failover has just demoted the node it
 * is on, or a cluster is moving a slot to a new master.
 */
export function isRedisUnavailable(error: unknown): boolean {
  const e = error as { name?: string; message?: string; code?: string }
  return e?.name === 'MaxRetriesPerRequestError' || REDIS_DOWN.test(e?.message ?? '') || REDIS_DOWN.test(e?.code ?? '')
}
