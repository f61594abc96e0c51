import { Worker, type ConnectionOptions } from 'bullmq'
import type { Logger } from 'pino'
import { listOf, type Config } from '../src/config.js'
import { InfobipClient } from '../src/infobip/client.js'
import { countTransitions, SharedMetrics } from '../src/metrics.js'
import { QUEUE, sendJobOptions, type DlrJob, type SendJob } from '../src/queues.js'
import { connectOrExplain, createRedis } from '../src/redis.js'
import { MessageStore } from '../src/store/message-store.js'
import { makeDlrProcessor } from './dlr.js'
import { makeSendProcessor } from './send.js'

export interface RunningWorkers {
  close(): Promise<void>
}

/**
 * Starts the workers named in WORKER_QUEUES against one Redis. Any number of these processes can
 * run side by side: the queues and the transition script are what coordinate them.
 */
export async function startWorkers(config: Config, log: Logger): Promise<RunningWorkers> {
  const redis = createRedis(config.REDIS_URL, 'worker')
  await connectOrExplain(redis, config.REDIS_URL)
  const connection: ConnectionOptions = createRedis(config.REDIS_URL, 'worker', { lazyConnect: false })
  const store = new MessageStore(redis, config.KEY_PREFIX, config.MESSAGE_TTL_DAYS)
  const infobip = new InfobipClient(config)
  // This process's counts go to Redis, where every API process reads them for /metrics.
  const metrics = new SharedMetrics(redis, config.KEY_PREFIX, log.child({ component: 'metrics' }))
  const onTransitions = countTransitions(metrics)
  const workers: Worker[] = []
  const common = { connection, prefix: config.KEY_PREFIX, lockDuration: config.JOB_LOCK_MS, stalledInterval: config.JOB_LOCK_MS }

  for (const name of listOf(config.WORKER_QUEUES)) {
    if (name === QUEUE.send) {
      let worker: Worker<SendJob> | undefined
      const processor = makeSendProcessor({
        store,
        infobip,
        log: log.child({ worker: 'send' }),
        maxAttempts: sendJobOptions(config).attempts!,
        backoffMs: config.SEND_BACKOFF_MS,
        rateLimitPerSecond: config.SEND_RATE_LIMIT_PER_SECOND,
        pauseQueue: async (ms) => worker?.rateLimit(ms),
        onSubmission: (outcome, n) => metrics.inc('sms_infobip_submissions_total', { outcome }, n),
        onTransitions,
      })
      worker = new Worker<SendJob>(QUEUE.send, processor, { ...common, concurrency: config.SEND_CONCURRENCY })
      workers.push(worker)
    }
    if (name === QUEUE.dlr) {
      const processor = makeDlrProcessor({
        store,
        log: log.child({ worker: 'dlr' }),
        onResult: (result, n) => metrics.inc('sms_reports_total', { result }, n),
        onTransitions,
      })
      workers.push(new Worker<DlrJob>(QUEUE.dlr, processor, { ...common, concurrency: config.DLR_CONCURRENCY }))
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
      await infobip.close()
      await metrics.close()
      redis.disconnect()
      ;(connection as { disconnect(): void }).disconnect()
    },
  }
}
