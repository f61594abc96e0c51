import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const Health = Type.Object({ status: Type.String() }, { examples: [{ status: 'ok' }] })
const Ready = Type.Object(
  {
    status: Type.String(),
    partitions: Type.Array(Type.Union([Type.Literal('ok'), Type.Literal('unreachable')]), {
      description: 'per partition (QUEUE_PARTITIONS): whether the Redis node that holds it answers',
    }),
  },
  { examples: [{ status: 'ok', partitions: ['ok', 'ok', 'ok'] }] },
)

/**
 * Liveness (`/health`, no dependencies) and readiness (`/ready`: the Redis node of every partition
 * answers — on a cluster, each partition's slot may be on another master).
 */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', { schema: { tags: ['operations'], response: { 200: Health } } }, async () => ({ status: 'ok' }))

  app.get('/ready', { schema: { tags: ['operations'], response: { 200: Ready, 503: Ready } } }, async (_request, reply) => {
    const partitions = await Promise.all(
      app.store.slotsOf().map((slot) =>
        app.redis.exists(slot).then(
          () => 'ok' as const,
          () => 'unreachable' as const,
        ),
      ),
    )
    if (partitions.every((p) => p === 'ok')) return { status: 'ok', partitions }
    return reply.code(503).send({ status: 'redis unreachable', partitions })
  })
}

export default health
