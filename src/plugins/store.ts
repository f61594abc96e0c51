import type { Queue } from 'bullmq'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import type { CallbackJob } from '../callbacks.js'
import { createQueue, QUEUE, type DlrJob, type SendJob } from '../queues.js'
import { connectOrExplain, createRedis } from '../redis.js'
import { MessageStore } from '../store/message-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
    store: MessageStore
    /** Every queue, for producers and for the operations plugins (dashboard, metrics). */
    queues: { send: Queue<SendJob>; dlr: Queue<DlrJob>; callback: Queue<CallbackJob>; reconcile: Queue }
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
    const queues = {
      send: createQueue<SendJob>(QUEUE.send, redis, config),
      dlr: createQueue<DlrJob>(QUEUE.dlr, redis, config),
      callback: createQueue<CallbackJob>(QUEUE.callback, redis, config),
      reconcile: createQueue(QUEUE.reconcile, redis, config),
    }
    app.decorate('redis', redis)
    app.decorate('store', new MessageStore(redis, config.KEY_PREFIX, config.MESSAGE_TTL_DAYS))
    app.decorate('queues', queues)
    app.addHook('onClose', async () => {
      await Promise.all(Object.values(queues).map((q) => q.close()))
      await redis.quit().catch(() => redis.disconnect())
    })
  },
  { name: 'store' },
)
