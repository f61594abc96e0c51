import type { Queue } from 'bullmq'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { CallbackJob } from '../callbacks.js'
import { createQueue, QUEUE, type DlrJob, type InboundJob, type SendJob } from '../queues.js'
import { connectOrExplain, createRedis } from '../redis.js'
import { MessageStore } from '../store/message-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The store's connection (and the rate limiter's). */
    redis: Redis
    /** The queues' connection. */
    queueRedis: Redis
    store: MessageStore
    /** Every queue, for producers and for the operations plugins (dashboard, metrics). */
    queues: { send: Queue<SendJob>; dlr: Queue<DlrJob>; callback: Queue<CallbackJob>; reconcile: Queue; inbound: Queue<InboundJob> }
  }
}

/**
 * The API's Redis connection (fail fast: no offline queue), the message store and the send queue.
 * Closed with the app.
 */
export default fp(
  async function storePlugin(app) {
    const { config } = app
    const redis = createRedis(config, 'producer', { enableAutoPipelining: true })
    await connectOrExplain(redis, config)
    // The queues get a connection of their own: ioredis copies a connection's defined scripts into
    // every pipeline it starts, and BullMQ defines dozens, which would slow every store pipeline.
    const queueRedis = createRedis(config, 'producer')
    await connectOrExplain(queueRedis, config)
    const queues = {
      send: createQueue<SendJob>(QUEUE.send, queueRedis, config),
      dlr: createQueue<DlrJob>(QUEUE.dlr, queueRedis, config),
      callback: createQueue<CallbackJob>(QUEUE.callback, queueRedis, config),
      reconcile: createQueue(QUEUE.reconcile, queueRedis, config),
      inbound: createQueue<InboundJob>(QUEUE.inbound, queueRedis, config),
    }
    app.decorate('redis', redis)
    app.decorate('queueRedis', queueRedis)
    app.decorate('store', new MessageStore(redis, config.KEY_PREFIX, config.MESSAGE_TTL_DAYS))
    app.decorate('queues', queues)
    app.addHook('onClose', async () => {
      await Promise.all(Object.values(queues).map((q) => q.close()))
      await Promise.all([redis, queueRedis].map((r) => r.quit().catch(() => r.disconnect())))
    })
  },
  { name: 'store' },
)
