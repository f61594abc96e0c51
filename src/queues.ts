import { Queue, type ConnectionOptions, type JobsOptions, type JobState } from 'bullmq'
import type { Config } from './config.js'
import { byShard, shardOf, shardsOf } from './shards.js'
import { shardRoot } from './store/keys.js'
import { queueTelemetry } from './tracing.js'

export const QUEUE = { send: 'send', dlr: 'dlr', callback: 'callback', reconcile: 'reconcile', inbound: 'inbound' } as const
export type QueueName = (typeof QUEUE)[keyof typeof QUEUE]

/** A send job names up to BATCH_SIZE messages created together; Infobip gets them in one request. */
export interface SendJob {
  ids: string[]
  /** Whose messages they are (jobs added before tenants existed have none: the default tenant). */
  tenant?: string
}

/** Attempts and full-jitter exponential backoff for Infobip submissions (docs/infobip.md). */
export function sendJobOptions(config: Config): JobsOptions {
  return {
    attempts: config.SEND_MAX_ATTEMPTS,
    backoff: { type: 'exponential', delay: config.SEND_BACKOFF_MS, jitter: 1 },
    removeOnComplete: true,
    removeOnFail: { age: 7 * 24 * 60 * 60 },
  }
}

/**
 * A dlr job is one POST to /infobip-dlr: its body exactly as Infobip sent it (the raw batch is what
 * is stored), so the API does not serialise the reports again.
 */
export interface DlrJob {
  body: string
}

/** The reports of a dlr job; the API checked that its body is JSON with a `results` array. */
export const dlrResults = (job: DlrJob): unknown[] => (JSON.parse(job.body) as { results: unknown[] }).results

/**
 * A POST's results as the bodies of one job per partition, each result in the partition `partitionOf`
 * names; when they all go to one, the body exactly as it came.
 */
export function bodiesByPartition(raw: string, results: unknown[], partitions: number, partitionOf: (result: unknown) => number): Map<number, string> {
  if (partitions === 1) return new Map([[0, raw]])
  const groups = byShard(results, (r) => partitionOf(r) % partitions)
  if (groups.size <= 1) return new Map([[[...groups.keys()][0] ?? 0, raw]])
  return new Map([...groups].map(([partition, group]) => [partition, JSON.stringify({ results: group })]))
}

/** The message id a report names (Infobip's messageId is ours), for its partition. */
export function reportMessageId(result: unknown): string {
  const id = (result as { messageId?: unknown } | null)?.messageId
  return typeof id === 'string' ? id : ''
}

/** Applying reports is idempotent (fingerprints), so a failed attempt is simply run again. */
export const dlrJobOptions: JobsOptions = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 60 * 60 },
}

/** An inbound job is one POST to /infobip-inbound, its body kept as Infobip sent it, like a dlr job. */
export interface InboundJob {
  body: string
}

/** The messages of an inbound job; the API checked that its body is JSON with a `results` array. */
export const inboundResults = (job: InboundJob): unknown[] => (JSON.parse(job.body) as { results: unknown[] }).results

/** Inbound messages already applied are remembered by messageId, so a failed attempt is simply run again. */
export const inboundJobOptions: JobsOptions = { ...dlrJobOptions }

/**
 * The BullMQ prefix of a queue's partition: the root of the shard it belongs to, `<KEY_PREFIX>:{<tag>}`,
 * so that a partition's keys share one hash slot with the shard's records (docs/store.md#shards).
 */
export const partitionPrefix = (config: Pick<Config, 'KEY_PREFIX'>, partition: number): string => shardRoot(config.KEY_PREFIX, partition)

/**
 * One queue of the service, split into QUEUE_PARTITIONS BullMQ queues (BullMQ keeps each queue in one
 * hash slot; work spreads over a cluster only across queues). A job goes to the partition of the
 * shard its message id names, which a send job shares with its messages' records.
 */
export class Partitioned<T> {
  constructor(readonly partitions: Queue<T>[]) {}

  /** The partition of the shard that this id (or a job id starting with it) names. */
  of(id: string): Queue<T> {
    return this.partitions[shardOf(id) % this.partitions.length]!
  }

  getJob(id: string) {
    return this.of(id).getJob(id)
  }

  /** Adds a job to the partition its id names. */
  add(name: string, data: T, opts: JobsOptions & { jobId: string }) {
    return (this.of(opts.jobId) as Queue).add(name, data, opts)
  }

  /** Adds jobs, each to the partition its id names: one call per partition. */
  async addBulk(jobs: { name: string; data: T; opts: JobsOptions & { jobId: string } }[]): Promise<void> {
    const groups = byShard(jobs, (job) => shardOf(job.opts.jobId) % this.partitions.length)
    // One job is one script call; addBulk would start a MULTI, which costs more than it saves.
    await Promise.all(
      [...groups].map(([partition, group]) => {
        const queue = this.partitions[partition]! as Queue
        return group.length === 1 ? queue.add(group[0]!.name, group[0]!.data, group[0]!.opts) : queue.addBulk(group)
      }),
    )
  }

  /** Jobs in these states, over all partitions. */
  async getJobCounts(...states: JobState[]): Promise<Record<string, number>> {
    const counts: Record<string, number> = {}
    for (const partition of await Promise.all(this.partitions.map((q) => q.getJobCounts(...states))))
      for (const [state, n] of Object.entries(partition)) counts[state] = (counts[state] ?? 0) + n
    return counts
  }

  /** Jobs waiting or delayed, over all partitions. */
  async count(): Promise<number> {
    return (await Promise.all(this.partitions.map((q) => q.count()))).reduce((a, b) => a + b, 0)
  }

  close(): Promise<unknown> {
    return Promise.all(this.partitions.map((q) => q.close()))
  }
}

/** A queue partition, with its number and how many partitions its queue has. */
export interface QueuePartition {
  queue: Queue
  partition: number
  partitions: number
}

/** Every partition of every one of these queues, queue by queue: what the dashboard and the metrics show. */
export const everyPartition = (queues: Record<string, { readonly partitions: readonly Queue[] }>): QueuePartition[] =>
  Object.values(queues).flatMap((q) => q.partitions.map((queue, partition, all) => ({ queue, partition, partitions: all.length })))

/**
 * BullMQ keys start with KEY_PREFIX, like every other key of the service, and each partition's with
 * its shard's hash tag. A job carries its producer's trace context to the worker (docs/tracing.md#span-tree).
 */
export function createQueues<T>(name: QueueName, connection: ConnectionOptions, config: Config): Partitioned<T> {
  return new Partitioned(
    shardsOf(config.QUEUE_PARTITIONS).map((p) => new Queue<T>(name, { connection, prefix: partitionPrefix(config, p), telemetry: queueTelemetry() })),
  )
}
