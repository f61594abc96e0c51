import { Worker, type Processor, type WorkerOptions } from 'bullmq'
import type { Logger } from 'pino'
import { callbackJobOptions, type CallbackJob } from '../src/callbacks.js'
import { listOf, type Config } from '../src/config.js'
import { InfobipClient, LOGS_CALLS_PER_MINUTE } from '../src/infobip/client.js'
import { countTransitions, SharedMetrics } from '../src/metrics.js'
import {
  createQueues,
  partitionPrefix,
  QUEUE,
  sendJobOptions,
  type DlrJob,
  type InboundJob,
  type Partitioned,
  type QueueName,
  type SendJob,
} from '../src/queues.js'
import { connectOrExplain, createRedis, type RedisClient } from '../src/redis.js'
import { MessageStore } from '../src/store/message-store.js'
import { DEFAULT_TENANT, loadTenants, type Tenants } from '../src/tenants.js'
import { shardsOf } from '../src/shards.js'
import { queueTelemetry } from '../src/tracing.js'
import { makeCallbackProcessor } from './callback.js'
import { makeDlrProcessor } from './dlr.js'
import { makeInboundProcessor } from './inbound.js'
import { startOutboxSweeper } from './outbox.js'
import { makeReconcileProcessor } from './reconcile.js'
import { makeSendProcessor } from './send.js'
import { makeAfterChanges, makeApplyTransitions, type AfterChanges, type ApplyTransitions } from '../src/changes.js'
import { keywords } from '../src/domain/inbound.js'

export interface Running {
  close(): Promise<void>
}

/** What every worker kind of one process shares: connections, the store, Infobip, metrics. */
interface Shared {
  config: Config
  log: Logger
  connection: RedisClient
  store: MessageStore
  infobip: InfobipClient
  metrics: SharedMetrics
  apply: ApplyTransitions
  afterChanges: AfterChanges
  callbackQueue: Partitioned<CallbackJob>
  /** The tenants' settings (TENANTS_FILE): callback secrets, whose indexes the reconciler trims, who owns an inbound number. */
  tenants: Tenants
}

/** The kinds of work a worker process can run: WORKER_QUEUES names them (default: all). */
const KINDS = {
  send: startSend,
  dlr: startDlr,
  callback: startCallback,
  outbox: startOutbox,
  reconcile: startReconcile,
  inbound: startInbound,
} satisfies Record<string, (shared: Shared) => Promise<Running>>
export type WorkerKind = keyof typeof KINDS

/**
 * Starts the work named in WORKER_QUEUES, on every partition of each queue. Any number of these
 * processes can run side by side: the queues and the store's scripts are what coordinate them.
 */
export async function startWorkers(config: Config, log: Logger): Promise<Running> {
  const tenants = loadTenants(config, { requireKeys: false })
  const redis = createRedis(config, 'worker')
  await connectOrExplain(redis, config)
  const store = new MessageStore(redis, {
    prefix: config.KEY_PREFIX,
    ttlDays: config.MESSAGE_TTL_DAYS,
    partitions: config.QUEUE_PARTITIONS,
    durability: config,
  })
  await store.checkPartitions(tenants.withDefault).catch((error: unknown) => {
    redis.disconnect()
    throw error
  })
  const connection = createRedis(config, 'worker', { lazyConnect: false })
  // This process's counts go to Redis, where every API process reads them for /metrics.
  const metrics = new SharedMetrics(redis, config.KEY_PREFIX, log.child({ component: 'metrics' }))
  const callbackQueue = createQueues<CallbackJob>(QUEUE.callback, connection, config)
  const hooks = { callbackQueue, callbackOptions: callbackJobOptions(config), onApplied: countTransitions(metrics) }
  const apply = makeApplyTransitions({ store, ...hooks })
  const afterChanges = makeAfterChanges(hooks)
  // Every process takes its calls to Infobip's logs API from one budget in Redis.
  const infobip = new InfobipClient(config, { logsBudget: () => store.reserveLogsCall(LOGS_CALLS_PER_MINUTE) })
  const shared: Shared = { config, log, connection, store, infobip, metrics, apply, afterChanges, callbackQueue, tenants }

  const kinds = listOf(config.WORKER_QUEUES) as WorkerKind[]
  const running = await Promise.all(kinds.map((kind) => KINDS[kind](shared)))
  log.info({ queues: kinds }, 'workers started')

  return {
    async close() {
      await Promise.all(running.map((r) => r.close()))
      await callbackQueue.close()
      await shared.infobip.close()
      await metrics.close()
      redis.disconnect()
      connection.disconnect()
    },
  }
}

/**
 * One BullMQ worker per partition of the queue, all running `processor` (given the partition), which
 * share the process's `concurrency` between them. Every processor is idempotent, so a job whose
 * worker died (stalled) may safely run again; BullMQ's default fails it after a single stall. A job
 * runs in its producer's trace (docs/tracing.md#span-tree).
 */
function startWorkersOf<T>(
  shared: Shared,
  name: QueueName,
  processor: (partition: number) => Processor<T>,
  concurrency: number,
  extra: Partial<WorkerOptions> = {},
): Running {
  const { config, connection, log } = shared
  const partitions = shardsOf(config.QUEUE_PARTITIONS)
  const workers = partitions.map((partition) => {
    const worker = new Worker<T>(name, processor(partition), {
      connection,
      prefix: partitionPrefix(config, partition),
      lockDuration: config.JOB_LOCK_MS,
      stalledInterval: config.JOB_LOCK_MS,
      maxStalledCount: 10,
      concurrency: Math.max(1, Math.ceil(concurrency / partitions.length)),
      telemetry: queueTelemetry(),
      ...extra,
    })
    worker.on('failed', (job, error) => log.warn({ queue: name, partition, jobId: job?.id, error: error.message }, 'job attempt failed'))
    worker.on('error', (error) => log.error({ queue: name, partition, error: error.message }, 'worker error'))
    return worker
  })
  return { close: () => Promise.all(workers.map((w) => w.close())).then(() => undefined) }
}

async function startSend(shared: Shared): Promise<Running> {
  const { config, store, infobip, apply, metrics } = shared
  // Infobip's 429 is about the account: it pauses every partition.
  const queues = createQueues<SendJob>(QUEUE.send, shared.connection, config)
  const processor = makeSendProcessor({
    store,
    infobip,
    apply,
    afterChanges: shared.afterChanges,
    log: shared.log.child({ worker: 'send' }),
    maxAttempts: sendJobOptions(config).attempts!,
    busyMs: config.INFOBIP_TIMEOUT_MS + 5000,
    backoffMs: config.SEND_BACKOFF_MS,
    rateLimitPerSecond: config.SEND_RATE_LIMIT_PER_SECOND,
    pauseQueue: async (ms) => {
      await Promise.all(queues.partitions.map((q) => q.rateLimit(ms)))
    },
    onSubmission: (outcome, n) => metrics.inc('sms_infobip_submissions_total', { outcome }, n),
    onMissing: (n) => metrics.inc('sms_send_jobs_missing_total', {}, n),
  })
  const running = startWorkersOf(shared, QUEUE.send, () => processor, config.SEND_CONCURRENCY, {
    // BullMQ honours a manual rateLimit() (Infobip's 429) in every worker only when a limiter is
    // configured; this one never limits by itself (our own budget counts messages, not jobs).
    limiter: { max: Number.MAX_SAFE_INTEGER - 1, duration: 1000 },
  })
  return {
    async close() {
      await running.close()
      await queues.close()
    },
  }
}

async function startDlr(shared: Shared): Promise<Running> {
  const processor = makeDlrProcessor({
    store: shared.store,
    apply: shared.apply,
    log: shared.log.child({ worker: 'dlr' }),
    onResult: (result, n) => shared.metrics.inc('sms_reports_total', { result }, n),
  })
  return startWorkersOf<DlrJob>(shared, QUEUE.dlr, () => processor, shared.config.DLR_CONCURRENCY)
}

async function startCallback(shared: Shared): Promise<Running> {
  const { config } = shared
  const processor = makeCallbackProcessor({
    store: shared.store,
    queue: shared.callbackQueue,
    log: shared.log.child({ worker: 'callback' }),
    secret: (tenant = DEFAULT_TENANT) => shared.tenants.get(tenant)?.callbackSigningSecret ?? config.CALLBACK_SIGNING_SECRET,
    allowPrivate: config.CALLBACK_ALLOW_PRIVATE,
  })
  const running = startWorkersOf<CallbackJob>(shared, QUEUE.callback, () => processor, config.CALLBACK_CONCURRENCY)
  return {
    async close() {
      await running.close()
      await processor.close()
    },
  }
}

/** Enqueues messages whose send jobs were never added (the API died between its two writes). */
async function startOutbox(shared: Shared): Promise<Running> {
  const queue = createQueues<SendJob>(QUEUE.send, shared.connection, shared.config)
  const sweeper = startOutboxSweeper({ store: shared.store, queue, config: shared.config, log: shared.log.child({ component: 'outbox' }) })
  return {
    async close() {
      sweeper.stop()
      await queue.close()
    },
  }
}

/**
 * Looks up, on a schedule, messages that got no final report: one job scheduler per partition for
 * all processes, whose jobs reconcile that partition's shard.
 */
async function startReconcile(shared: Shared): Promise<Running> {
  const { config } = shared
  const queues = createQueues(QUEUE.reconcile, shared.connection, config)
  for (const queue of queues.partitions)
    await queue.upsertJobScheduler(
      'reconcile',
      { every: config.RECONCILE_INTERVAL_SECONDS * 1000 },
      { name: 'reconcile', opts: { removeOnComplete: true, removeOnFail: 100 } },
    )
  const reconcile = makeReconcileProcessor({
    store: shared.store,
    infobip: shared.infobip,
    apply: shared.apply,
    log: shared.log.child({ worker: 'reconcile' }),
    afterSeconds: config.RECONCILE_AFTER_SECONDS,
    ttlDays: config.MESSAGE_TTL_DAYS,
    tenants: shared.tenants.withDefault,
  })
  const running = startWorkersOf(shared, QUEUE.reconcile, (shard) => () => reconcile(shard), config.QUEUE_PARTITIONS)
  return {
    async close() {
      await running.close()
      await queues.close()
    },
  }
}

/**
 * Inbound SMS, one job at a time per partition: an opt-out and an opt-in of one number, posted one
 * after the other, go to the same partition and are then applied in that order by this process.
 */
async function startInbound(shared: Shared): Promise<Running> {
  const { config } = shared
  const processor = makeInboundProcessor({
    store: shared.store,
    log: shared.log.child({ worker: 'inbound' }),
    keywords: keywords(listOf(config.OPT_OUT_KEYWORDS), listOf(config.OPT_IN_KEYWORDS)),
    tenants: shared.tenants.all,
    onAction: (action) => shared.metrics.inc('sms_inbound_total', { action }),
  })
  return startWorkersOf<InboundJob>(shared, QUEUE.inbound, () => processor, config.QUEUE_PARTITIONS)
}
