import fp from 'fastify-plugin'
import type { CallbackJob } from '../callbacks.js'
import { createQueues, QUEUE, type DlrJob, type InboundJob, type Partitioned, type SendJob } from '../queues.js'
import { connectOrExplain, createRedis, type RedisClient } from '../redis.js'
import { MessageStore } from '../store/message-store.js'
import { loadTenants } from '../tenants.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The store's connection (and the rate limiter's). */
    redis: RedisClient
    /** The queues' connection. */
    queueRedis: RedisClient
    store: MessageStore
    /** Every queue (each in QUEUE_PARTITIONS partitions), for producers and for the operations plugins (dashboard, metrics). */
    queues: {
      send: Partitioned<SendJob>
      dlr: Partitioned<DlrJob>
      callback: Partitioned<CallbackJob>
      reconcile: Partitioned<unknown>
      inbound: Partitioned<InboundJob>
    }
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
    const store = new MessageStore(redis, { prefix: config.KEY_PREFIX, ttlDays: config.MESSAGE_TTL_DAYS, partitions: config.QUEUE_PARTITIONS })
    await store.checkPartitions(loadTenants(config, { requireKeys: false }).withDefault).catch((error: unknown) => {
      redis.disconnect()
      throw error
    })
    // The queues get a connection of their own: ioredis copies a connection's defined scripts into
    // every pipeline it starts, and BullMQ defines dozens, which would slow every store pipeline.
    const queueRedis = createRedis(config, 'producer')
    await connectOrExplain(queueRedis, config)
    const queues = {
      send: createQueues<SendJob>(QUEUE.send, queueRedis, config),
      dlr: createQueues<DlrJob>(QUEUE.dlr, queueRedis, config),
      callback: createQueues<CallbackJob>(QUEUE.callback, queueRedis, config),
      reconcile: createQueues<unknown>(QUEUE.reconcile, queueRedis, config),
      inbound: createQueues<InboundJob>(QUEUE.inbound, queueRedis, config),
    }
    app.decorate<RedisClient>('redis', redis)
    app.decorate<RedisClient>('queueRedis', queueRedis)
    app.decorate('store', store)
    app.decorate('queues', queues)
    app.addHook('onClose', async () => {
      await Promise.all(Object.values(queues).map((q) => q.close()))
      await Promise.all([redis, queueRedis].map((r) => r.quit().catch(() => r.disconnect())))
    })
  },
  { name: 'store' },
)
