import { STATUS, type Status } from '../domain/status.js'

/**
 * Every Redis key name of the service. Per-message keys carry the message id as a hash tag
 * (`{msg_…}`), so that the record (events and report fingerprints included) and its `infobip` JSON
 * live in one slot.
 *
 * What a tenant owns lives under `t:<tenant>:` (docs/store.md#tenants): its search indexes and its
 * idempotency keys. The search indexes (`idx:*`) are sorted sets whose members are message ids. Ids
 * are ULIDs, which sort by creation time, so they use score 0 and lexicographic ranges: newest first
 * is a reverse range, and `since`/`until` are id bounds. `idx:open` and `idx:stale` are the
 * service's own (the reconciler's), scored by submission time.
 */
export interface Keys {
  message(id: string): string
  /** The `infobip` object of the report that set the current status, as JSON. */
  infobip(id: string): string
  idempotency(tenant: string, key: string): string
  outbox(): string
  unmatched(): string
  sendBudget(second: number): string
  /** Calls made to Infobip's logs API in one minute (`minute` = Unix time / 60 s). */
  logsBudget(minute: number): string
  /** Every message of the tenant, by creation. */
  created(tenant: string): string
  byStatus(tenant: string, status: Status): string
  /** Every status index of the tenant, in STATUS order. */
  statusIndexes(tenant: string): string[]
  /**
   * What precedes a tenant's name in its keys, and what follows it in a status index's name: the
   * transition script builds `<tenantRoot><tenant><STATUS_INDEX><status>` from the record's tenant.
   */
  tenantRoot(): string
  byReference(tenant: string, reference: string): string
  byRecipient(tenant: string, to: string): string
  /** The tenant's suppression list: number → `{ reason, source, createdAt }` JSON. */
  suppressions(tenant: string): string
  /** Inbound messages already applied (their Infobip messageId), for a while. */
  inboundSeen(messageId: string): string
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

export const STATUS_INDEX = ':idx:status:'
/** What follows a tenant's name in the name of its suppression list (a hash: number → JSON). */
export const SUPPRESSIONS = ':supp'

export function makeKeys(prefix: string): Keys {
  const tenantRoot = `${prefix}:t:`
  const byStatus = (tenant: string, status: Status) => `${tenantRoot}${tenant}${STATUS_INDEX}${status}`
  return {
    message: (id) => `${prefix}:msg:{${id}}`,
    infobip: (id) => `${prefix}:msg:{${id}}:infobip`,
    idempotency: (tenant, key) => `${tenantRoot}${tenant}:idem:${key}`,
    outbox: () => `${prefix}:outbox`,
    unmatched: () => `${prefix}:dlr:unmatched`,
    sendBudget: (second) => `${prefix}:budget:send:${second}`,
    logsBudget: (minute) => `${prefix}:budget:logs:${minute}`,
    created: (tenant) => `${tenantRoot}${tenant}:idx:created`,
    byStatus,
    statusIndexes: (tenant) => Object.values(STATUS).map((status) => byStatus(tenant, status)),
    tenantRoot: () => tenantRoot,
    byReference: (tenant, reference) => `${tenantRoot}${tenant}:idx:ref:${reference}`,
    byRecipient: (tenant, to) => `${tenantRoot}${tenant}:idx:to:${to}`,
    suppressions: (tenant) => `${tenantRoot}${tenant}${SUPPRESSIONS}`,
    inboundSeen: (messageId) => `${prefix}:inbound:seen:${messageId}`,
    open: () => `${prefix}:idx:open`,
    stale: () => `${prefix}:idx:stale`,
    staleCount: () => `${prefix}:metrics:stale`,
    reconcileCursor: () => `${prefix}:reconcile:cursor`,
    metrics: () => `${prefix}:metrics`,
    rateLimit: () => `${prefix}:ratelimit:`,
  }
}
