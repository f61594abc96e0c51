import { STATUS, type Status } from '../domain/status.js'

/**
 * Every Redis key name of the service. Per-message keys carry the message id as a hash tag
 * (`{msg_…}`), so that the record (events and report fingerprints included) and its `infobip` JSON
 * live in one slot.
 *
 * The indexes (`idx:*`) are sorted sets whose members are message ids. Ids are ULIDs, which sort by
 * creation time, so all but `idx:open` use score 0 and lexicographic ranges: newest first is a
 * reverse range, and `since`/`until` are id bounds.
 */
export interface Keys {
  message(id: string): string
  /** The `infobip` object of the report that set the current status, as JSON. */
  infobip(id: string): string
  idempotency(scope: string, key: string): string
  outbox(): string
  unmatched(): string
  sendBudget(second: number): string
  /** Calls made to Infobip's logs API in one minute (`minute` = Unix time / 60 s). */
  logsBudget(minute: number): string
  /** Every message, by creation. */
  created(): string
  byStatus(status: Status): string
  /** Every status index, in STATUS order (the transition script moves ids between them). */
  statusIndexes(): string[]
  byReference(reference: string): string
  byRecipient(to: string): string
  /** Submitted, not yet final: score = submission time (ms); what the reconciler looks up. */
  open(): string
  /** PENDING messages past Infobip's logs window, which nothing will tell more of: score = submission time. */
  stale(): string
  /** The number of stale messages (the gauge `sms_messages_stale`, set by the reconciler). */
  staleCount(): string
  /** Where the reconciler's last run stopped in the open index (a submission time). */
  reconcileCursor(): string
  /** Counters that every process adds to, for /metrics (a hash: series → value). */
  metrics(): string
  /** The namespace of @fastify/rate-limit's counters. */
  rateLimit(): string
}

export function makeKeys(prefix: string): Keys {
  const byStatus = (status: Status) => `${prefix}:idx:status:${status}`
  return {
    message: (id) => `${prefix}:msg:{${id}}`,
    infobip: (id) => `${prefix}:msg:{${id}}:infobip`,
    idempotency: (scope, key) => `${prefix}:idem:{${scope}}:${key}`,
    outbox: () => `${prefix}:outbox`,
    unmatched: () => `${prefix}:dlr:unmatched`,
    sendBudget: (second) => `${prefix}:budget:send:${second}`,
    logsBudget: (minute) => `${prefix}:budget:logs:${minute}`,
    created: () => `${prefix}:idx:created`,
    byStatus,
    statusIndexes: () => Object.values(STATUS).map(byStatus),
    byReference: (reference) => `${prefix}:idx:ref:${reference}`,
    byRecipient: (to) => `${prefix}:idx:to:${to}`,
    open: () => `${prefix}:idx:open`,
    stale: () => `${prefix}:idx:stale`,
    staleCount: () => `${prefix}:metrics:stale`,
    reconcileCursor: () => `${prefix}:reconcile:cursor`,
    metrics: () => `${prefix}:metrics`,
    rateLimit: () => `${prefix}:ratelimit:`,
  }
}
