import { STATUS, type Status } from '../domain/status.js'
import { SHARD_TAGS, shardOf } from '../shards.js'

/**
 * Every Redis key name of the service. What belongs to a shard (src/shards.ts) starts with the
 * shard's root, `<prefix>:{<shard tag>}:`, so that everything one script or MULTI touches is in one
 * hash slot: message records (`msg:<id>`, the shard named by the id), the outbox, the open and stale
 * indexes, and under `t:<tenant>:` what a tenant owns in that shard (docs/store.md#tenants): its search
 * indexes, idempotency keys and its copy of the suppression list. The rest (budgets, metrics, rate
 * limits, unmatched reports, inbound ids) are keys of their own, each alone in its commands.
 *
 * The search indexes (`idx:*`) are sorted sets whose members are message ids. Ids are ULIDs, which sort
 * by creation time, so they use score 0 and lexicographic ranges: newest first is a reverse range, and
 * `since`/`until` are id bounds. `idx:open` and `idx:stale` are the service's own (the reconciler's),
 * scored by submission time.
 */
export interface Keys {
  /** What every key of a shard starts with (the shard's BullMQ queues' prefix too). */
  shardRoot(shard: number): string
  message(id: string): string
  /** The `infobip` object of the report that set the current status, as JSON. */
  infobip(id: string): string
  idempotency(tenant: string, key: string, shard: number): string
  outbox(shard: number): string
  unmatched(): string
  sendBudget(second: number): string
  /** Calls made to Infobip's logs API in one minute (`minute` = Unix time / 60 s). */
  logsBudget(minute: number): string
  /** Every message of the tenant in the shard, by creation. */
  created(tenant: string, shard: number): string
  byStatus(tenant: string, status: Status, shard: number): string
  /** Every status index of the tenant in the shard, in STATUS order. */
  statusIndexes(tenant: string, shard: number): string[]
  /**
   * What precedes a tenant's name in its keys of the shard, and what follows it in a status index's
   * name: the scripts build `<tenantRoot><tenant><STATUS_INDEX><status>` from the record's tenant.
   */
  tenantRoot(shard: number): string
  byReference(tenant: string, reference: string, shard: number): string
  byRecipient(tenant: string, to: string, shard: number): string
  /** The shard's copy of the tenant's suppression list: number → `{ reason, source, createdAt }` JSON. */
  suppressions(tenant: string, shard: number): string
  /** Inbound messages already applied (their Infobip messageId), for a while. */
  inboundSeen(messageId: string): string
  /** Submitted, not yet final: score = submission time (ms); what the reconciler looks up. */
  open(shard: number): string
  /** PENDING messages past Infobip's logs window, which nothing will tell more of: score = submission time. */
  stale(shard: number): string
  /** The number of stale messages of the shard (summed into the gauge `sms_messages_stale`). */
  staleCount(shard: number): string
  /** Where the reconciler's last run in the shard stopped in its open index (a submission time). */
  reconcileCursor(shard: number): string
  /** The highest QUEUE_PARTITIONS any process has run with (it may be raised, not lowered). */
  partitions(): string
  /** Counters that every process adds to, for /metrics (a hash: series → value). */
  metrics(): string
  /** The namespace of @fastify/rate-limit's counters. */
  rateLimit(): string
}

export const STATUS_INDEX = ':idx:status:'
/** What follows a tenant's name in the name of its suppression list (a hash: number → JSON). */
export const SUPPRESSIONS = ':supp'

/** `<prefix>:{<tag>}`: what every key of a shard starts with, and its BullMQ queues' prefix. */
export const shardRoot = (prefix: string, shard: number): string => `${prefix}:{${SHARD_TAGS[shard]}}`

export function makeKeys(prefix: string): Keys {
  const roots = SHARD_TAGS.map((_, shard) => `${shardRoot(prefix, shard)}:`)
  const tenantRoot = (shard: number) => `${roots[shard]}t:`
  const byStatus = (tenant: string, status: Status, shard: number) => `${tenantRoot(shard)}${tenant}${STATUS_INDEX}${status}`
  const message = (id: string) => `${roots[shardOf(id)]}msg:${id}`
  return {
    shardRoot: (shard) => roots[shard]!.slice(0, -1),
    message,
    infobip: (id) => `${message(id)}:infobip`,
    idempotency: (tenant, key, shard) => `${tenantRoot(shard)}${tenant}:idem:${key}`,
    outbox: (shard) => `${roots[shard]}outbox`,
    unmatched: () => `${prefix}:dlr:unmatched`,
    sendBudget: (second) => `${prefix}:budget:send:${second}`,
    logsBudget: (minute) => `${prefix}:budget:logs:${minute}`,
    created: (tenant, shard) => `${tenantRoot(shard)}${tenant}:idx:created`,
    byStatus,
    statusIndexes: (tenant, shard) => Object.values(STATUS).map((status) => byStatus(tenant, status, shard)),
    tenantRoot,
    byReference: (tenant, reference, shard) => `${tenantRoot(shard)}${tenant}:idx:ref:${reference}`,
    byRecipient: (tenant, to, shard) => `${tenantRoot(shard)}${tenant}:idx:to:${to}`,
    suppressions: (tenant, shard) => `${tenantRoot(shard)}${tenant}${SUPPRESSIONS}`,
    inboundSeen: (messageId) => `${prefix}:inbound:seen:${messageId}`,
    open: (shard) => `${roots[shard]}idx:open`,
    stale: (shard) => `${roots[shard]}idx:stale`,
    staleCount: (shard) => `${roots[shard]}metrics:stale`,
    reconcileCursor: (shard) => `${roots[shard]}reconcile:cursor`,
    partitions: () => `${prefix}:partitions`,
    metrics: () => `${prefix}:metrics`,
    rateLimit: () => `${prefix}:ratelimit:`,
  }
}
