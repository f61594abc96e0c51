import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { makeKeys } from '../store/keys.js'

/**
 * The per-tenant budget on `/messages`, `/callbacks` and `/suppressions` (docs/api.md#rate-limits):
 * every request counts once, reads and batches included; a tenant's keys share it, and its
 * `rateLimitPerMinute` overrides RATE_LIMIT_PER_MINUTE. The counters live in Redis, so every API
 * process shares one budget. Registered in each of those scopes after authentication, so the
 * tenant is known; the scopes share the counters, which are named by tenant alone.
 */
export async function registerRateLimit(app: FastifyInstance): Promise<void> {
  const { config } = app
  await app.register(fastifyRateLimit, {
    max: (request) => request.tenant.rateLimitPerMinute ?? config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    redis: app.redis,
    nameSpace: makeKeys(config.KEY_PREFIX).rateLimit(),
    keyGenerator: (request) => request.tenant.name,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      error: 'Too Many Requests',
      message: `Rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`,
    }),
  })
}
