import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const Health = Type.Object({ status: Type.String() }, { examples: [{ status: 'ok' }] })

/** Liveness (`/health`, no dependencies) and readiness (`/ready`, Redis answers). */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', { schema: { tags: ['operations'], response: { 200: Health } } }, async () => ({ status: 'ok' }))

  app.get('/ready', { schema: { tags: ['operations'], response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    try {
      await app.redis.ping()
      return { status: 'ok' }
    } catch {
      return reply.code(503).send({ status: 'redis unreachable' })
    }
  })
}

export default health
