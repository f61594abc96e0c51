import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { makeKeys } from '../store/keys.js'

/**
 * The per-API-key budget on `/messages*` (docs/api.md#rate-limits): every request counts once, reads and batches
 * included. The counters live in Redis, so every API process shares one budget. Registered inside
 * the messages scope after authentication, so the key is known.
 */
export async function registerRateLimit(app: FastifyInstance, config: Config): Promise<void> {
  await app.register(fastifyRateLimit, {
    max: config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    redis: app.redis,
    nameSpace: makeKeys(config.KEY_PREFIX).rateLimit(),
    keyGenerator: (request) => request.apiKeyScope,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      error: 'Too Many Requests',
      message: `Rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`,
    }),
  })
}
