import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq'
import type { Config } from './config.js'
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
 * BullMQ keys start with KEY_PREFIX, like every other key of the service. A job carries its
 * producer's trace context to the worker (docs/tracing.md#span-tree).
 */
export function createQueue<T>(name: QueueName, connection: ConnectionOptions, config: Config): Queue<T> {
  return new Queue<T>(name, { connection, prefix: config.KEY_PREFIX, telemetry: queueTelemetry() })
}
