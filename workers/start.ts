import { type Queue, Worker, type ConnectionOptions } from 'bullmq'
import type { Logger } from 'pino'
import { callbackJobOptions, type CallbackJob } from '../src/callbacks.js'
import { listOf, type Config } from '../src/config.js'
import { InfobipClient } from '../src/infobip/client.js'
import { countTransitions, SharedMetrics } from '../src/metrics.js'
import { createQueue, QUEUE, sendJobOptions, type DlrJob, type SendJob } from '../src/queues.js'
import { connectOrExplain, createRedis } from '../src/redis.js'
import { MessageStore } from '../src/store/message-store.js'
import { makeCallbackProcessor } from './callback.js'
import { makeDlrProcessor } from './dlr.js'
import { startOutboxSweeper } from './outbox.js'
import { makeReconcileProcessor } from './reconcile.js'
import { makeSendProcessor } from './send.js'
import { makeApplyTransitions } from './transitions.js'

export interface RunningWorkers {
  close(): Promise<void>
}

/**
 * Starts the workers named in WORKER_QUEUES against one Redis. Any number of these processes can
 * run side by side: the queues and the transition script are what coordinate them. Processes that
 * run `send` also sweep the outbox and run the reconciler on its schedule.
 */
export async function startWorkers(config: Config, log: Logger): Promise<RunningWorkers> {
  const redis = createRedis(config.REDIS_URL, 'worker')
  await connectOrExplain(redis, config.REDIS_URL)
  const connection: ConnectionOptions = createRedis(config.REDIS_URL, 'worker', { lazyConnect: false })
  const store = new MessageStore(redis, config.KEY_PREFIX, config.MESSAGE_TTL_DAYS)
  const infobip = new InfobipClient(config)
  // This process's counts go to Redis, where every API process reads them for /metrics.
  const metrics = new SharedMetrics(redis, config.KEY_PREFIX, log.child({ component: 'metrics' }))
  const callbackQueue = createQueue<CallbackJob>(QUEUE.callback, connection, config)
  const apply = makeApplyTransitions({ store, callbackQueue, callbackOptions: callbackJobOptions(config), onApplied: countTransitions(metrics) })
  const queues: Queue[] = [callbackQueue]
  const workers: Worker[] = []
  const stops: (() => Promise<void> | void)[] = []
  // Every processor is idempotent, so a job whose worker died (stalled) may safely run again; BullMQ's
  // default fails it after a single stall.
  const common = { connection, prefix: config.KEY_PREFIX, lockDuration: config.JOB_LOCK_MS, stalledInterval: config.JOB_LOCK_MS, maxStalledCount: 10 }

  for (const name of listOf(config.WORKER_QUEUES)) {
    if (name === QUEUE.send) {
      const processor = makeSendProcessor({
        store,
        infobip,
        apply,
        log: log.child({ worker: 'send' }),
        maxAttempts: sendJobOptions(config).attempts!,
        busyMs: config.INFOBIP_TIMEOUT_MS + 5000,
        backoffMs: config.SEND_BACKOFF_MS,
        rateLimitPerSecond: config.SEND_RATE_LIMIT_PER_SECOND,
        pauseQueue: async (ms) => worker.rateLimit(ms),
        onSubmission: (outcome, n) => metrics.inc('sms_infobip_submissions_total', { outcome }, n),
      })
      const worker = new Worker<SendJob>(QUEUE.send, processor, {
        ...common,
        concurrency: config.SEND_CONCURRENCY,
        // BullMQ honours a manual rateLimit() (Infobip's 429) in every worker only when a limiter is
        // configured; this one never limits by itself (our own budget counts messages, not jobs).
        limiter: { max: Number.MAX_SAFE_INTEGER - 1, duration: 1000 },
      })
      workers.push(worker)

      const sendQueue = createQueue<SendJob>(QUEUE.send, connection, config)
      queues.push(sendQueue)
      const sweeper = startOutboxSweeper({ store, queue: sendQueue, config, log: log.child({ component: 'outbox' }) })
      stops.push(() => sweeper.stop())

      const reconcileQueue = createQueue(QUEUE.reconcile, connection, config)
      queues.push(reconcileQueue)
      await reconcileQueue.upsertJobScheduler(
        'reconcile',
        { every: config.RECONCILE_INTERVAL_SECONDS * 1000 },
        { name: 'reconcile', opts: { removeOnComplete: true, removeOnFail: 100 } },
      )
      const reconcile = makeReconcileProcessor({
        store,
        infobip,
        apply,
        log: log.child({ worker: 'reconcile' }),
        afterSeconds: config.RECONCILE_AFTER_SECONDS,
        ttlDays: config.MESSAGE_TTL_DAYS,
      })
      workers.push(new Worker(QUEUE.reconcile, reconcile, { ...common, concurrency: 1 }))
    }
    if (name === QUEUE.dlr) {
      const processor = makeDlrProcessor({
        store,
        apply,
        log: log.child({ worker: 'dlr' }),
        onResult: (result, n) => metrics.inc('sms_reports_total', { result }, n),
      })
      workers.push(new Worker<DlrJob>(QUEUE.dlr, processor, { ...common, concurrency: config.DLR_CONCURRENCY }))
    }
    if (name === QUEUE.callback) {
      const processor = makeCallbackProcessor({
        store,
        queue: callbackQueue,
        log: log.child({ worker: 'callback' }),
        secret: config.CALLBACK_SIGNING_SECRET,
        allowPrivate: config.CALLBACK_ALLOW_PRIVATE,
      })
      stops.push(() => processor.close())
      workers.push(new Worker<CallbackJob>(QUEUE.callback, processor, { ...common, concurrency: config.SEND_CONCURRENCY }))
    }
  }
  for (const worker of workers) {
    worker.on('failed', (job, error) => log.warn({ queue: worker.name, jobId: job?.id, error: error.message }, 'job attempt failed'))
    worker.on('error', (error) => log.error({ queue: worker.name, error: error.message }, 'worker error'))
  }
  log.info({ queues: workers.map((w) => w.name) }, 'workers started')

  return {
    async close() {
      await Promise.all(workers.map((w) => w.close()))
      for (const stop of stops) await stop()
      await Promise.all(queues.map((q) => q.close()))
      await infobip.close()
      await metrics.close()
      redis.disconnect()
      ;(connection as { disconnect(): void }).disconnect()
    },
  }
}
