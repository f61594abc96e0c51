import type { JobsOptions } from 'bullmq'
import type { Config } from './config.js'
import type { Status } from './domain/status.js'
import { isFinal } from './domain/status.js'
import type { Transition, TransitionResult } from './domain/message.js'

/** The JSON a client's callbackUrl receives for one status change (docs/statuses.md#client-callbacks). */
export interface CallbackPayload {
  eventId: string
  messageId: string
  reference: string | null
  status: Status
  previousStatus: Status
  final: boolean
  seq: number
  at: string
  infobip: { status: unknown; error: unknown }
}

export interface CallbackJob {
  url: string
  /** Whose message it is: its callbacks are signed with that tenant's secret (absent in jobs of old: the default tenant). */
  tenant?: string
  payload: CallbackPayload
}

/** Stable across retries, and usable as a BullMQ job id (no colon). */
export const eventId = (messageId: string, seq: number): string => `${messageId}-${seq}`

/**
 * Retries with exponential backoff (by default from 15 s, 14 attempts: about a day); jobs that
 * exhaust them stay in the failed set, which is the dead-letter list.
 */
export const callbackJobOptions = (config: Pick<Config, 'CALLBACK_MAX_ATTEMPTS' | 'CALLBACK_BACKOFF_MS'>) =>
  ({
    attempts: config.CALLBACK_MAX_ATTEMPTS,
    backoff: { type: 'exponential', delay: config.CALLBACK_BACKOFF_MS, jitter: 0.5 },
    // Delivered callbacks are kept a day, so that a report Infobip repeats does not re-send them.
    removeOnComplete: { age: 24 * 60 * 60 },
    removeOnFail: false,
  }) as const

/** Callback jobs for the applied transitions of messages that have a callbackUrl. */
export function callbackJobs(transitions: Transition[], results: TransitionResult[], options: JobsOptions, at = new Date().toISOString()) {
  return transitions.flatMap((t, i) => {
    const result = results[i]
    // A duplicate that once changed the status gets its callback job again: the job id is the event
    // id, so this adds nothing unless a worker died between the change and its callback.
    const r = result?.result === 'applied' ? result : result?.result === 'duplicate' ? result.earlier : undefined
    if (!r?.callbackUrl) return []
    const id = eventId(t.id, r.seq)
    const infobip = t.infobip as { status?: unknown; error?: unknown } | undefined
    const payload: CallbackPayload = {
      eventId: id,
      messageId: t.id,
      reference: r.reference,
      status: t.status,
      previousStatus: r.previous,
      final: isFinal(t.status),
      seq: r.seq,
      at: 'at' in r ? r.at : (t.at ?? at),
      infobip: { status: infobip?.status ?? null, error: infobip?.error ?? null },
    }
    return [{ name: 'callback', data: { url: r.callbackUrl, tenant: r.tenant, payload }, opts: { ...options, jobId: id } }]
  })
}
