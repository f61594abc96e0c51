import type { Queue } from 'bullmq'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import { createQueue, QUEUE, type SendJob } from '../queues.js'
import { connectOrExplain, createRedis } from '../redis.js'
import { MessageStore } from '../store/message-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
    store: MessageStore
    sendQueue: Queue<SendJob>
  }
}

/**
 * The API's Redis connection (fail fast: no offline queue), the message store and the send queue.
 * Closed with the app.
 */
export default fp(
  async function storePlugin(app, { config }: { config: Config }) {
    const redis = createRedis(config.REDIS_URL, 'producer')
    await connectOrExplain(redis, config.REDIS_URL)
    const sendQueue = createQueue<SendJob>(QUEUE.send, redis, config)
    app.decorate('redis', redis)
    app.decorate('store', new MessageStore(redis, config.KEY_PREFIX, config.MESSAGE_TTL_DAYS))
    app.decorate('sendQueue', sendQueue)
    app.addHook('onClose', async () => {
      await sendQueue.close()
      await redis.quit().catch(() => redis.disconnect())
    })
  },
  { name: 'store' },
)
