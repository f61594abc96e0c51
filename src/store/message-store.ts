import type { ChainableCommander } from 'ioredis'
import {
  BATCH_SIZE,
  inBatches,
  queuedMessage,
  suppressedMessage,
  type AppliedChange,
  type Claim,
  type Message,
  type NewMessage,
  type SearchQuery,
  type Transition,
  type TransitionResult,
} from '../domain/message.js'
import { maskPhones } from '../domain/phone.js'
import { STATUS, type Status } from '../domain/status.js'
import { FINGERPRINT_FIELD, fromHash, idBound, parseTransition, tenantOf, toHash } from './codec.js'
import type { Config } from '../config.js'
import { acknowledge, writesFrom } from '../durability.js'
import type { RedisClient } from '../redis.js'
import { byShard, shardOf, shardOfKey, shardsOf } from '../shards.js'
import { makeKeys, type Keys } from './keys.js'
import { defineScripts } from './scripts.js'
import { searchMessages, type SearchPage } from './search.js'

export interface ClaimOptions {
  /** The claiming job: a fresh in-flight marker of another job makes a message "busy". */
  owner: string
  /** How long a submission can take: an older marker is an unknown outcome, not a busy one. */
  busyMs: number
  /** The caller looked the messages up in Infobip's logs already: claim them despite a marker. */
  force?: boolean
}

/** What cancelling one message did (see CANCEL); `job` is a scheduled message's delayed send job. */
export type CancelResult = { result: 'canceled'; change: AppliedChange; job: string | null } | { result: 'refused'; status: Status } | { result: 'missing' }

/** An entry of a tenant's suppression list (docs/api.md#suppressions). */
export interface Suppression {
  to: string
  reason: string | null
  source: 'api' | 'inbound'
  createdAt: string
}

/** CREATE's answer for a message whose number is suppressed. */
const SUPPRESSED = 2

/** A stored message and whose it is. */
export interface Owned {
  message: Message
  tenant: string
}

export interface IdempotencyRecord {
  fingerprint: string
  ids: string[]
}

const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
const UNMATCHED_KEPT = 1000

export interface StoreOptions {
  prefix: string
  ttlDays: number
  /** QUEUE_PARTITIONS: how many shards messages are spread over (src/shards.ts). */
  partitions?: number
  /**
   * The workers' REDIS_MIN_REPLICAS: claims and status changes return only once that many replicas
   * have them (else they throw, and the job is retried), so that a failover cannot undo what a worker
   * has done since: a claim lost with its master could mean a second submission to Infobip.
   */
  durability?: Pick<Config, 'REDIS_MIN_REPLICAS' | 'REDIS_WAIT_TIMEOUT_MS'>
}

/**
 * The Redis message store: the only code that knows key names. Every status change goes through
 * the TRANSITION script. Messages live in shards (src/shards.ts): every script call and every MULTI
 * stays within one shard, and a multi-message write is one round trip per shard it touches, all
 * shards at once.
 */
export class MessageStore {
  readonly keys: Keys
  /** The shards 0 … QUEUE_PARTITIONS − 1. */
  readonly shards: number[]
  readonly #redis: RedisClient
  readonly #ttlSeconds: number
  readonly #durability: StoreOptions['durability']
  #nextShard = 0

  constructor(redis: RedisClient, options: StoreOptions) {
    this.#redis = redis
    this.keys = makeKeys(options.prefix)
    this.shards = shardsOf(options.partitions ?? 1)
    this.#ttlSeconds = options.ttlDays * 24 * 60 * 60
    this.#durability = options.durability
    defineScripts(redis)
  }

  /**
   * The shard of a new request's messages: the one its idempotency key names (so that the key and
   * the messages share a slot), else the next in turn.
   */
  shardFor(tenant: string, idempotencyKey?: string): number {
    if (idempotencyKey !== undefined) return shardOfKey(`${tenant}:${idempotencyKey}`, this.shards.length)
    this.#nextShard = (this.#nextShard + 1) % this.shards.length
    return this.#nextShard
  }

  /**
   * A key of each shard these message ids name, or of every shard: where writes went, for the WAIT
   * of REDIS_MIN_REPLICAS (on a cluster it goes to the master of each of these slots).
   */
  slotsOf(ids?: readonly string[]): string[] {
    const shards = ids ? new Set(ids.map(shardOf)) : this.shards
    return [...shards].map((shard) => this.keys.shardRoot(shard))
  }

  /**
   * QUEUE_PARTITIONS may be raised, never lowered: a lower value would leave shards that nothing
   * searches, sweeps or reconciles. The highest value any process ran with is kept in Redis, and a
   * process started with less refuses to start. When it is raised, every tenant's suppression list
   * is copied into the new shards.
   */
  async checkPartitions(tenants: string[]): Promise<void> {
    const recorded = Number((await this.#redis.get(this.keys.partitions())) ?? 1)
    const configured = this.shards.length
    if (configured < recorded)
      throw new Error(
        `QUEUE_PARTITIONS=${configured} is lower than the ${recorded} this deployment (KEY_PREFIX) already runs with: it may be raised, never lowered.`,
      )
    if (configured === recorded) return
    for (const tenant of tenants) {
      const entries = await this.#redis.hgetall(this.keys.suppressions(tenant, 0))
      if (Object.keys(entries).length === 0) continue
      await Promise.all(this.shards.slice(recorded).map((shard) => this.#redis.hset(this.keys.suppressions(tenant, shard), entries)))
    }
    await this.#redis.set(this.keys.partitions(), configured)
  }

  /**
   * Stores new messages, each with its QUEUED event and its tenant's index entries, all or none. They
   * also go into the outbox until their send jobs exist, so that a crash between the two writes loses
   * nothing. One message is one CREATE call, which undoes itself if a write fails; several of one
   * shard go in a MULTI, one per shard, all shards at once. When one fails, the messages stored by
   * the others are removed again before the error is thrown.
   */
  async create(messages: NewMessage[], now = new Date()): Promise<Message[]> {
    const ms = String(now.getTime())
    // A scheduled message is kept MESSAGE_TTL_DAYS after it is due, not after it was accepted.
    const ttl = (m: NewMessage) => String(this.#ttlSeconds + (m.sendAt ? Math.max(0, Math.ceil((Date.parse(m.sendAt) - now.getTime()) / 1000)) : 0))
    const retained = idBound(new Date(now.getTime() - this.#ttlSeconds * 1000).toISOString())
    const args = (m: NewMessage, message: Message) => {
      const shard = shardOf(m.id)
      const record = this.keys.message(m.id)
      const list = [
        record,
        this.keys.outbox(shard),
        this.keys.created(m.tenant, shard),
        this.keys.byStatus(m.tenant, STATUS.QUEUED, shard),
        this.keys.byRecipient(m.tenant, message.to, shard),
        this.keys.byReference(m.tenant, message.reference ?? '', shard),
        this.keys.suppressions(m.tenant, shard),
        ttl(m),
        m.id,
        ms,
        message.reference ? '1' : '',
        retained,
        record.slice(0, -m.id.length),
        this.keys.tenantRoot(shard),
        m.tenant,
        message.to,
      ]
      const hash = toHash(message, m.tenant, m.job)
      for (const field in hash) list.push(field, String(hash[field]))
      return list
    }
    const created = new Map(messages.map((m) => [m, queuedMessage(m, (m.createdAt ?? now).toISOString())]))
    const shards = [...byShard(messages, (m) => shardOf(m.id)).values()]
    const outcomes = await Promise.allSettled(shards.map((group) => this.#createInShard(group, (m) => args(m, created.get(m)!))))
    const failed = outcomes.find((o) => o.status === 'rejected')
    if (failed) {
      await this.remove(shards.filter((_, i) => outcomes[i]!.status === 'fulfilled').flat()).catch(() => {
        // Redis is gone: what was stored waits in the outbox (docs/operations.md#guarantees).
      })
      throw failed.reason
    }
    // A suppressed number's message was stored REJECTED: answer what was stored.
    const suppressed = new Set(shards.flatMap((group, i) => group.filter((_, j) => (outcomes[i] as PromiseFulfilledResult<number[]>).value[j] === SUPPRESSED)))
    return messages.map((m) => (suppressed.has(m) ? suppressedMessage(created.get(m)!, now.toISOString()) : created.get(m)!))
  }

  /** One shard's messages: one CREATE alone, several in a MULTI, whose successful calls are undone if one fails. */
  async #createInShard(messages: NewMessage[], args: (m: NewMessage) => string[]): Promise<number[]> {
    if (messages.length === 1) return [await this.#redis.smsCreate(...args(messages[0]!))]
    const multi = this.#redis.multi()
    for (const m of messages) multi.smsCreate(...args(m))
    const replies = await multi.exec()
    if (!replies) throw new Error('redis transaction aborted')
    const failed = replies.find(([error]) => error)
    if (failed) {
      await this.remove(messages.filter((_, i) => !replies[i]![0])).catch(() => {
        // Redis is gone: what was stored waits in the outbox (docs/operations.md#guarantees).
      })
      throw failed[0]!
    }
    return replies.map(([, result]) => result as number)
  }

  /** The send jobs of these messages exist: they leave the outbox. */
  async removeFromOutbox(ids: string[]): Promise<void> {
    await this.#perShard(
      ids,
      (id) => id,
      (shard, group) => this.#redis.zrem(this.keys.outbox(shard), ...group).then(() => group),
    )
  }

  /** Removes messages whose creation could not be completed: records, index entries, outbox entries. */
  async remove(messages: NewMessage[]): Promise<void> {
    await this.#perShard(
      messages,
      (m) => m.id,
      async (shard, group) => {
        const multi = this.#redis.multi()
        for (const m of group) {
          multi.del(this.keys.message(m.id), this.keys.infobip(m.id))
          const indexes = [
            this.keys.created(m.tenant, shard),
            this.keys.byStatus(m.tenant, STATUS.QUEUED, shard),
            this.keys.byStatus(m.tenant, STATUS.REJECTED, shard),
            this.keys.byRecipient(m.tenant, m.to, shard),
          ]
          for (const index of indexes) multi.zrem(index, m.id)
          if (m.reference) multi.zrem(this.keys.byReference(m.tenant, m.reference, shard), m.id)
        }
        multi.zrem(this.keys.outbox(shard), ...group.map((m) => m.id))
        await exec(multi)
        return group
      },
    )
  }

  /** Ids that have sat in the shard's outbox longer than `olderThanMs`: their jobs were never added. */
  async outboxBefore(shard: number, olderThanMs: number, limit = 1000): Promise<string[]> {
    return this.#redis.zrangebyscore(this.keys.outbox(shard), 0, Date.now() - olderThanMs, 'LIMIT', 0, limit)
  }

  async get(id: string): Promise<Message | undefined> {
    return (await this.getMany([id]))[0]
  }

  async getMany(ids: string[]): Promise<(Message | undefined)[]> {
    return (await this.getOwners(ids)).map((owned) => owned?.message)
  }

  /**
   * The tenant's messages among `ids`; another tenant's are undefined, exactly like unknown ones,
   * and cost the same round trip (docs/tenants.md#what-is-isolated).
   */
  async getOwned(tenant: string, ids: string[]): Promise<(Message | undefined)[]> {
    return (await this.getOwners(ids)).map((owned) => (owned?.tenant === tenant ? owned.message : undefined))
  }

  /** Messages with their tenants, in one round trip. */
  async getOwners(ids: string[]): Promise<(Owned | undefined)[]> {
    return this.#perShard(
      ids,
      (id) => id,
      async (_, group) => {
        const pipeline = this.#redis.pipeline()
        for (const id of group) pipeline.hgetall(this.keys.message(id)).get(this.keys.infobip(id))
        const replies = (await exec(pipeline)) as (Record<string, string> | string | null)[]
        return group.map((_, i) => {
          const hash = replies[2 * i] as Record<string, string>
          return hash.id ? { message: fromHash(hash, replies[2 * i + 1] as string | null), tenant: tenantOf(hash) } : undefined
        })
      },
    )
  }

  /** The fingerprints of the reports recorded for each message (applied, ignored or duplicate). */
  async fingerprints(ids: string[]): Promise<Set<string>[]> {
    const replies = await this.#perShard(
      ids,
      (id) => id,
      (_, group) => exec(group.reduce((p, id) => p.hkeys(this.keys.message(id)), this.#redis.pipeline())) as Promise<string[][]>,
    )
    return replies.map((fields) => new Set(fields.filter((f) => f.startsWith(FINGERPRINT_FIELD)).map((f) => f.slice(FINGERPRINT_FIELD.length))))
  }

  /**
   * Reserves an idempotency key for these message ids. Returns undefined when reserved, or the
   * earlier reservation when the key was already taken.
   */
  async reserveIdempotencyKey(tenant: string, key: string, record: IdempotencyRecord): Promise<IdempotencyRecord | undefined> {
    const name = this.keys.idempotency(tenant, key, this.shardFor(tenant, key))
    const ok = await this.#redis.set(name, JSON.stringify(record), 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX')
    if (ok === 'OK') return undefined
    const existing = await this.#redis.get(name)
    // The key expired between the two calls: try once more.
    return existing ? (JSON.parse(existing) as IdempotencyRecord) : this.reserveIdempotencyKey(tenant, key, record)
  }

  async releaseIdempotencyKey(tenant: string, key: string): Promise<void> {
    await this.#redis.del(this.keys.idempotency(tenant, key, this.shardFor(tenant, key)))
  }

  /**
   * Applies status changes, each one atomically (docs/statuses.md): one TRANSITION call per 100 of them
   * in a shard, a pipeline per shard.
   */
  async transition(transitions: Transition[]): Promise<TransitionResult[]> {
    return this.#durable(
      transitions.map((t) => t.id),
      () =>
        this.#perShard(
          transitions,
          (t) => t.id,
          (shard, group) => this.#transitionInShard(shard, group),
        ),
    )
  }

  /** `write`, then (with `durability`) WAIT on the node of every shard it touched. */
  async #durable<R>(ids: string[], write: () => Promise<R>): Promise<R> {
    if (!this.#durability?.REDIS_MIN_REPLICAS) return write()
    const writes = writesFrom([this.#redis], this.slotsOf(ids))
    const result = await write()
    await acknowledge(writes, this.#durability)
    return result
  }

  async #transitionInShard(shard: number, transitions: Transition[]): Promise<TransitionResult[]> {
    const pipeline = this.#redis.pipeline()
    const now = Date.now()
    const shared = [this.keys.open(shard), this.keys.stale(shard)]
    const sharedArgs = [String(this.#ttlSeconds), this.keys.tenantRoot(shard)]
    for (const batch of inBatches(transitions)) {
      const keys = [...shared]
      const args = [...sharedArgs]
      for (const t of batch) {
        keys.push(this.keys.message(t.id), this.keys.infobip(t.id))
        args.push(
          t.status,
          t.source,
          String(t.at ? Date.parse(t.at) : now),
          t.infobipStatus ?? '',
          t.error ? JSON.stringify(t.error) : '',
          t.fingerprint ?? '',
          t.settlesSubmission ? '1' : '',
          t.id,
          t.infobip ? JSON.stringify(t.infobip) : '',
        )
      }
      pipeline.smsTransition(keys.length, ...keys, ...args)
    }
    const replies = (await exec(pipeline)) as string[][][]
    return replies.flat().map(parseTransition)
  }

  /** Claims messages for submission (see CLAIM): one call per 100 of them in a shard, a pipeline per shard. */
  async claim(ids: string[], options: ClaimOptions): Promise<Claim[]> {
    const now = String(Date.now())
    const replies = await this.#durable(ids, () =>
      this.#perShard(
        ids,
        (id) => id,
        async (shard, group) => {
          const pipeline = this.#redis.pipeline()
          const args = [options.force ? 'force' : '', now, options.owner, String(options.busyMs), this.keys.tenantRoot(shard)]
          for (const batch of inBatches(group)) {
            pipeline.smsClaim(1 + batch.length, this.keys.open(shard), ...batch.map((id) => this.keys.message(id)), ...args, ...batch)
          }
          return ((await exec(pipeline)) as string[][][]).flat()
        },
      ),
    )
    return replies.map(([result, a, b, c, d], i): Claim => {
      if (result === 'ok') return { result, submission: { id: ids[i]!, to: a!, from: b!, text: c!, validityPeriodMinutes: d ? Number(d) : undefined } }
      if (result === 'suppressed')
        return { result, change: { previous: STATUS.QUEUED, seq: Number(a), submittedAt: null, callbackUrl: b || null, reference: c || null, tenant: d! } }
      return { result: result as 'missing' | 'done' | 'unknown' | 'busy' }
    })
  }

  /**
   * Cancels the tenant's messages that have not been submitted (see CANCEL): one call per 100 of
   * them, all in one pipeline. Another tenant's message is `missing`, like an unknown one.
   */
  async cancel(tenant: string, ids: string[]): Promise<CancelResult[]> {
    const now = String(Date.now())
    const replies = await this.#perShard(
      ids,
      (id) => id,
      async (shard, group) => {
        const pipeline = this.#redis.pipeline()
        const args = [this.keys.tenantRoot(shard), now, tenant]
        for (const batch of inBatches(group)) pipeline.smsCancel(batch.length, ...batch.map((id) => this.keys.message(id)), ...args, ...batch)
        return ((await exec(pipeline)) as string[][][]).flat()
      },
    )
    return replies.map(([result, a, b, c, d]): CancelResult => {
      if (result === 'canceled')
        return {
          result,
          change: { previous: STATUS.QUEUED, seq: Number(a), submittedAt: null, callbackUrl: b || null, reference: c || null, tenant },
          job: d || null,
        }
      if (result === 'refused') return { result, status: a as Status }
      return { result: 'missing' }
    })
  }

  /**
   * The ids of a tenant's messages with this reference, a page at a time in id order, every shard's
   * merged: `after` is the last id of the previous page (docs/api.md#cancel-a-campaign).
   */
  async idsByReference(tenant: string, reference: string, after: string | undefined, limit: number): Promise<string[]> {
    const pages = await Promise.all(
      this.shards.map(
        (shard) =>
          this.#redis.call('ZRANGE', this.keys.byReference(tenant, reference, shard), after ? `(${after}` : '-', '+', 'BYLEX', 'LIMIT', 0, limit) as Promise<
            string[]
          >,
      ),
    )
    return pages.flat().sort().slice(0, limit)
  }

  /**
   * Puts a number on tenants' suppression lists. An entry already there keeps its `createdAt` and
   * `source` (how the number got there first); its reason is replaced. Returns the entries.
   */
  async suppress(tenants: string[], to: string, entry: Omit<Suppression, 'to' | 'createdAt'>, now = new Date()): Promise<Suppression[]> {
    const earlier = await Promise.all(tenants.map((tenant) => this.#redis.hget(this.keys.suppressions(tenant, 0), to)))
    const entries = tenants.map((tenant, i): Suppression => {
      const before = earlier[i] ? (JSON.parse(earlier[i]) as Omit<Suppression, 'to'>) : undefined
      return { to, reason: entry.reason, source: before?.source ?? entry.source, createdAt: before?.createdAt ?? now.toISOString() }
    })
    // Every shard has its copy, which CREATE and CLAIM look up in their own slot; shard 0's is the one read.
    await Promise.all(
      this.shards.map((shard) =>
        exec(
          entries.reduce(
            (p, { to: _, ...stored }, i) => p.hset(this.keys.suppressions(tenants[i]!, shard), to, JSON.stringify(stored)),
            this.#redis.pipeline(),
          ),
        ),
      ),
    )
    return entries
  }

  /** Takes a number off tenants' suppression lists (every shard's copy); returns, per tenant, whether it was there. */
  async unsuppress(tenants: string[], to: string): Promise<boolean[]> {
    const [first] = await Promise.all(
      this.shards.map((shard) => exec(tenants.reduce((p, tenant) => p.hdel(this.keys.suppressions(tenant, shard), to), this.#redis.pipeline()))),
    )
    return first!.map((n) => n === 1)
  }

  async suppression(tenant: string, to: string): Promise<Suppression | undefined> {
    const value = await this.#redis.hget(this.keys.suppressions(tenant, 0), to)
    return value ? { to, ...(JSON.parse(value) as Omit<Suppression, 'to'>) } : undefined
  }

  /** A page of a tenant's suppression list (HSCAN: every entry present throughout is listed, an entry may come twice). */
  async suppressions(tenant: string, cursor: string | undefined, limit: number): Promise<{ suppressions: Suppression[]; nextCursor: string | null }> {
    const [next, flat] = await this.#redis.hscan(this.keys.suppressions(tenant, 0), cursor ?? '0', 'COUNT', limit)
    const suppressions: Suppression[] = []
    for (let i = 0; i < flat.length; i += 2) suppressions.push({ to: flat[i]!, ...(JSON.parse(flat[i + 1]!) as Omit<Suppression, 'to'>) })
    return { suppressions, nextCursor: next === '0' ? null : next }
  }

  /**
   * Marks an inbound message (its Infobip messageId) as applied, for 7 days; false when it was
   * already, so that a repeat has no further effect.
   */
  async firstInbound(messageId: string): Promise<boolean> {
    return (await this.#redis.set(this.keys.inboundSeen(messageId), '1', 'EX', 7 * 24 * 60 * 60, 'NX')) === 'OK'
  }

  /** Whether an inbound message was marked applied by `firstInbound`, without marking it. */
  async seenInbound(messageId: string): Promise<boolean> {
    return (await this.#redis.exists(this.keys.inboundSeen(messageId))) === 1
  }

  async forgetInbound(messageId: string): Promise<void> {
    await this.#redis.del(this.keys.inboundSeen(messageId))
  }

  /** Infobip answered without accepting (429, 4xx, 5xx): the outcome of the submission is known. */
  async settle(ids: string[]): Promise<void> {
    await this.#perShard(
      ids,
      (id) => id,
      (_, group) => exec(group.reduce((p, id) => p.hdel(this.keys.message(id), 'inflight'), this.#redis.pipeline())),
    )
  }

  /** Takes `n` submissions from the global per-second budget; false when it is spent. */
  async reserveSendBudget(n: number, limitPerSecond: number): Promise<boolean> {
    const second = Math.floor(Date.now() / 1000)
    return (await this.#redis.smsReserveBudget(this.keys.sendBudget(second), n, limitPerSecond, 1)) === 1
  }

  /**
   * Takes one call from the logs API's budget of `limitPerMinute`, shared by every process (the send
   * workers' lookups and the reconciler alike). Returns 0, or when it is spent, the ms until the next minute.
   */
  async reserveLogsCall(limitPerMinute: number): Promise<number> {
    const now = Date.now()
    const minute = Math.floor(now / 60_000)
    const taken = (await this.#redis.smsReserveBudget(this.keys.logsBudget(minute), 1, limitPerMinute, 60)) === 1
    return taken ? 0 : (minute + 1) * 60_000 - now
  }

  /** A page of the tenant's messages matching `query`, newest first (see `searchMessages`). */
  async search(query: SearchQuery): Promise<SearchPage> {
    return searchMessages(this.#redis, this.keys, this.shards, (ids) => this.getOwned(query.tenant, ids), query)
  }

  /**
   * The reconciler's work list in a shard: up to `limit` open messages submitted before `before`, continuing
   * after the last one the previous call returned and going round, so that no number of open messages
   * keeps others from being looked up.
   */
  async dueForReconcile(shard: number, before: number, limit: number): Promise<string[]> {
    const open = this.keys.open(shard)
    const cursor = (await this.#redis.get(this.keys.reconcileCursor(shard))) ?? '-inf'
    const after = await this.#redis.zrangebyscore(open, `(${cursor}`, before, 'WITHSCORES', 'LIMIT', 0, limit)
    const wrapped =
      after.length / 2 < limit
        ? await this.#redis.zrangebyscore(open, '-inf', cursor === '-inf' ? '-inf' : `(${cursor}`, 'WITHSCORES', 'LIMIT', 0, limit - after.length / 2)
        : []
    const flat = [...after, ...wrapped]
    if (flat.length > 0) await this.#redis.set(this.keys.reconcileCursor(shard), flat[flat.length - 1]!)
    return flat.filter((_, i) => i % 2 === 0)
  }

  /**
   * Open messages of a shard submitted before `before` leave the reconciler's work list: Infobip's logs no longer
   * know them. Those still PENDING are stale (a SENT one may never get a handset report: it stays SENT).
   * Returns how many are stale, the ones whose records expired before `expiredBefore` forgotten.
   */
  async retireOpen(shard: number, before: number, expiredBefore: number): Promise<number> {
    const open = this.keys.open(shard)
    const stale = this.keys.stale(shard)
    for (let round = 0; round < 100; round++) {
      const ids = await this.#redis.zrangebyscore(open, '-inf', `(${before}`, 'LIMIT', 0, BATCH_SIZE)
      if (ids.length === 0) break
      await this.#redis.smsRetire(2 + ids.length, open, stale, ...ids.map((id) => this.keys.message(id)), String(before), ...ids)
    }
    const [, count] = (await exec(this.#redis.multi().zremrangebyscore(stale, '-inf', `(${expiredBefore}`).zcard(stale))) as [number, number]
    await this.#redis.set(this.keys.staleCount(shard), count)
    return count
  }

  /**
   * Index entries of one tenant in a shard whose records have expired are removed from its created and status
   * indexes, a bounded number per call (the per-value indexes trim themselves as entries arrive, and
   * expire). Entries are looked at only once older than the retention, and removed only when the
   * record is gone: a scheduled message is kept until MESSAGE_TTL_DAYS after its `sendAt`.
   */
  async trimIndexes(tenant: string, shard: number, olderThan: Date, limit = 1000): Promise<number> {
    const bound = `(${idBound(olderThan.toISOString())}`
    const candidates = (await this.#redis.call('ZRANGE', this.keys.created(tenant, shard), '-', bound, 'BYLEX', 'LIMIT', 0, limit)) as string[]
    if (candidates.length === 0) return 0
    const exists = await exec(candidates.reduce((p, id) => p.exists(this.keys.message(id)), this.#redis.pipeline()))
    const gone = candidates.filter((_, i) => exists[i] === 0)
    if (gone.length === 0) return 0
    const pipeline = this.#redis.pipeline()
    for (const key of [this.keys.created(tenant, shard), ...this.keys.statusIndexes(tenant, shard)]) pipeline.zrem(key, ...gone)
    await exec(pipeline)
    return gone.length
  }

  /** The client's callback URL answered 410 Gone: no more deliveries for this message. */
  async stopCallbacks(id: string): Promise<void> {
    await this.#redis.hset(this.keys.message(id), 'callbacksStopped', '1')
  }

  async callbacksStopped(id: string): Promise<boolean> {
    return (await this.#redis.hget(this.keys.message(id), 'callbacksStopped')) === '1'
  }

  /**
   * Keeps a report for an unknown message id for inspection (capped list, newest first), its numbers
   * masked to their last four digits; the list expires MESSAGE_TTL_DAYS after its last entry.
   */
  async keepUnmatched(reports: unknown[]): Promise<void> {
    if (reports.length === 0) return
    const key = this.keys.unmatched()
    await exec(
      this.#redis
        .multi()
        .lpush(key, ...reports.map((r) => JSON.stringify(maskPhones(r))))
        .ltrim(key, 0, UNMATCHED_KEPT - 1)
        .expire(key, this.#ttlSeconds),
    )
  }

  /**
   * Runs `run` once per shard with that shard's items (the shard named by `idOf`), all shards at
   * once; returns the results in the items' order.
   */
  async #perShard<T, R>(items: readonly T[], idOf: (item: T) => string, run: (shard: number, items: T[]) => Promise<R[]>): Promise<R[]> {
    const results = new Array<R>(items.length)
    const groups = byShard(
      items.map((item, index) => ({ item, index })),
      ({ item }) => shardOf(idOf(item)),
    )
    await Promise.all(
      [...groups].map(async ([shard, group]) => {
        const replies = await run(
          shard,
          group.map((g) => g.item),
        )
        group.forEach((g, i) => (results[g.index] = replies[i]!))
      }),
    )
    return results
  }
}

/** Runs a pipeline or MULTI and throws the first command error, if any. */
async function exec(chain: ChainableCommander): Promise<unknown[]> {
  const replies = await chain.exec()
  if (!replies) throw new Error('redis transaction aborted')
  return replies.map(([error, value]) => {
    if (error) throw error
    return value
  })
}
