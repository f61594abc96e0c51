import type { ChainableCommander, ClientContext, Redis, Result } from 'ioredis'
import { isFinal, STATUS, type EventSource, type Status } from '../domain/status.js'
import type { Submission } from '../infobip/requests.js'
import { makeKeys, type Keys } from './keys.js'
import { CLAIM, CREATE, RESERVE_BUDGET, TRANSITION } from './scripts.js'

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    smsTransition(numberOfKeys: number, ...keysAndArgs: string[]): Result<string[][], Context>
    smsClaim(numberOfKeys: number, ...keysAndArgs: string[]): Result<string[][], Context>
    smsCreate(...keysAndArgs: string[]): Result<number, Context>
    smsReserveBudget(k1: string, n: number, limit: number): Result<number, Context>
  }
}

/** What the API stores for a new message; everything else is derived or added later. */
export interface NewMessage {
  id: string
  to: string
  from: string
  text: string
  reference?: string | undefined
  callbackUrl?: string | undefined
  sendAt?: string | undefined
  validityPeriodMinutes?: number | undefined
  encoding: 'GSM-7' | 'UCS-2'
  segments: number
  /** When it was accepted (the time in its id); default: when it is stored. */
  createdAt?: Date | undefined
}

export interface MessageEvent {
  seq: number
  status: Status
  source: EventSource
  at: string
  infobipStatus?: string
}

export interface MessageError {
  code: string
  message: string
}

/** The message resource of the API (SPEC §4). */
export interface Message {
  id: string
  to: string
  from: string
  text: string
  reference: string | null
  callbackUrl: string | null
  sendAt: string | null
  validityPeriodMinutes: number | null
  status: Status
  final: boolean
  encoding: 'GSM-7' | 'UCS-2'
  segments: number
  attempts: number
  infobip: Record<string, unknown> | null
  error: MessageError | null
  events: MessageEvent[]
  createdAt: string
  updatedAt: string
}

/** A status change to apply. `fingerprint` identifies a delivery report for deduplication. */
export interface Transition {
  id: string
  status: Status
  source: EventSource
  at?: string
  infobipStatus?: string | undefined
  infobip?: Record<string, unknown> | undefined
  error?: MessageError | undefined
  fingerprint?: string | undefined
  /** The send worker got Infobip's answer: the submission's outcome is known. */
  settlesSubmission?: boolean
}

/** What an applied change made: the event `seq`, and what its callback needs. */
export interface AppliedChange {
  previous: Status
  seq: number
  submittedAt: number | null
  callbackUrl: string | null
  reference: string | null
}

export type TransitionResult =
  | ({ result: 'applied' } & AppliedChange)
  | { result: 'ignored'; current: Status }
  /** `earlier`: the change this report made when it was first applied, if it made one. */
  | { result: 'duplicate'; earlier?: AppliedChange & { at: string } }
  | { result: 'unmatched' }

/** A message claimed for submission comes with what the submission needs. */
export type Claim = { result: 'ok'; submission: Submission } | { result: 'missing' | 'done' | 'unknown' | 'busy' }

export interface ClaimOptions {
  /** The claiming job: a fresh in-flight marker of another job makes a message "busy". */
  owner: string
  /** How long a submission can take: an older marker is an unknown outcome, not a busy one. */
  busyMs: number
  /** The caller looked the messages up in Infobip's logs already: claim them despite a marker. */
  force?: boolean
}

export interface SearchQuery {
  status?: Status | undefined
  reference?: string | undefined
  /** Digits only, as stored. */
  to?: string | undefined
  /** ISO instants: created at or after `since`, before `until`. */
  since?: string | undefined
  until?: string | undefined
  limit: number
  cursor?: string | undefined
}

export interface IdempotencyRecord {
  fingerprint: string
  ids: string[]
}

const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
/** Messages per TRANSITION or CLAIM call: Redis runs each call whole, so a call stays short (a few ms). */
const PER_CALL = 100
/** `items` in runs of PER_CALL, one script call each. */
function* perCall<T>(items: T[]): Generator<T[]> {
  for (let start = 0; start < items.length; start += PER_CALL) yield items.slice(start, start + PER_CALL)
}
const UNMATCHED_KEPT = 1000

/**
 * The Redis message store: the only code that knows key names. Every status change goes through
 * the TRANSITION script; every multi-message write is one round trip.
 */
export class MessageStore {
  readonly keys: Keys
  readonly #redis: Redis
  readonly #ttlSeconds: number

  constructor(redis: Redis, prefix: string, ttlDays: number) {
    this.#redis = redis
    this.keys = makeKeys(prefix)
    this.#ttlSeconds = ttlDays * 24 * 60 * 60
    // The number of keys depends on the batch: given with each call.
    redis.defineCommand('smsTransition', { lua: TRANSITION })
    redis.defineCommand('smsClaim', { lua: CLAIM })
    redis.defineCommand('smsCreate', { numberOfKeys: 6, lua: CREATE })
    redis.defineCommand('smsReserveBudget', { numberOfKeys: 1, lua: RESERVE_BUDGET })
  }

  /**
   * Stores new messages, each with its QUEUED event, all or none (one script call each). They also go into
   * the outbox until their send jobs exist, so that a crash between the two writes loses nothing.
   */
  async create(messages: NewMessage[], now = new Date()): Promise<Message[]> {
    const ttl = String(this.#ttlSeconds)
    const ms = String(now.getTime())
    const created = messages.map((m) => newMessage(m, (m.createdAt ?? now).toISOString()))
    const outbox = this.keys.outbox()
    const createdIndex = this.keys.created()
    const queuedIndex = this.keys.byStatus(STATUS.QUEUED)
    const args = (message: Message) => {
      const list = [
        this.keys.message(message.id),
        outbox,
        createdIndex,
        queuedIndex,
        this.keys.byRecipient(message.to),
        this.keys.byReference(message.reference ?? ''),
        ttl,
        message.id,
        ms,
        message.reference ? '1' : '',
      ]
      const hash = toHash(message)
      for (const field in hash) list.push(field, String(hash[field]))
      return list
    }
    // One script call is atomic by itself; several go in a MULTI, so that a batch is all or nothing.
    if (created.length === 1) await this.#redis.smsCreate(...args(created[0]!))
    else {
      const multi = this.#redis.multi()
      for (const message of created) multi.smsCreate(...args(message))
      await exec(multi)
    }
    return created
  }

  /** The send jobs of these messages exist: they leave the outbox. */
  async enqueued(ids: string[]): Promise<void> {
    if (ids.length > 0) await this.#redis.zrem(this.keys.outbox(), ...ids)
  }

  /** Removes messages whose creation could not be completed (their jobs could not be added). */
  async remove(ids: string[]): Promise<void> {
    const multi = this.#redis.multi()
    for (const id of ids) multi.del(this.keys.message(id), this.keys.infobip(id))
    multi.zrem(this.keys.outbox(), ...ids)
    await exec(multi)
  }

  /** Ids that have sat in the outbox longer than `olderThanMs`: their jobs were never added. */
  async outboxBefore(olderThanMs: number, limit = 1000): Promise<string[]> {
    return this.#redis.zrangebyscore(this.keys.outbox(), 0, Date.now() - olderThanMs, 'LIMIT', 0, limit)
  }

  async get(id: string): Promise<Message | undefined> {
    return (await this.getMany([id]))[0]
  }

  async getMany(ids: string[]): Promise<(Message | undefined)[]> {
    const pipeline = this.#redis.pipeline()
    for (const id of ids) pipeline.hgetall(this.keys.message(id)).get(this.keys.infobip(id))
    const replies = (await exec(pipeline)) as (Record<string, string> | string | null)[]
    return ids.map((_, i) => {
      const hash = replies[2 * i] as Record<string, string>
      return hash.id ? fromHash(hash, replies[2 * i + 1] as string | null) : undefined
    })
  }

  /** The fingerprints of the reports recorded for each message (applied, ignored or duplicate). */
  async fingerprints(ids: string[]): Promise<Set<string>[]> {
    const pipeline = this.#redis.pipeline()
    for (const id of ids) pipeline.hkeys(this.keys.message(id))
    const replies = (await exec(pipeline)) as string[][]
    return replies.map((fields) => new Set(fields.filter((f) => f.startsWith(FINGERPRINT)).map((f) => f.slice(FINGERPRINT.length))))
  }

  /**
   * Reserves an idempotency key for these message ids. Returns undefined when reserved, or the
   * earlier reservation when the key was already taken.
   */
  async reserveIdempotencyKey(scope: string, key: string, record: IdempotencyRecord): Promise<IdempotencyRecord | undefined> {
    const name = this.keys.idempotency(scope, key)
    const ok = await this.#redis.set(name, JSON.stringify(record), 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX')
    if (ok === 'OK') return undefined
    const existing = await this.#redis.get(name)
    // The key expired between the two calls: try once more.
    return existing ? (JSON.parse(existing) as IdempotencyRecord) : this.reserveIdempotencyKey(scope, key, record)
  }

  async releaseIdempotencyKey(scope: string, key: string): Promise<void> {
    await this.#redis.del(this.keys.idempotency(scope, key))
  }

  /**
   * Applies status changes, each one atomically (SPEC §5): one TRANSITION call per 100 of them, all
   * calls in one pipeline.
   */
  async transition(transitions: Transition[]): Promise<TransitionResult[]> {
    const pipeline = this.#redis.pipeline()
    const now = Date.now()
    const shared = [this.keys.open(), ...this.keys.statusIndexes()]
    const ttl = String(this.#ttlSeconds)
    for (const batch of perCall(transitions)) {
      const keys = [...shared]
      const args = [ttl]
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

  /** Claims messages for submission (see CLAIM): one call per 100 of them, all in one pipeline. */
  async claim(ids: string[], options: ClaimOptions): Promise<Claim[]> {
    const pipeline = this.#redis.pipeline()
    const now = String(Date.now())
    const args = [options.force ? 'force' : '', now, options.owner, String(options.busyMs)]
    for (const batch of perCall(ids)) {
      pipeline.smsClaim(1 + batch.length, this.keys.open(), ...batch.map((id) => this.keys.message(id)), ...args, ...batch)
    }
    const replies = ((await exec(pipeline)) as string[][][]).flat()
    return replies.map(([result, to, from, text, validity], i): Claim =>
      result === 'ok'
        ? { result, submission: { id: ids[i]!, to: to!, from: from!, text: text!, validityPeriodMinutes: validity ? Number(validity) : undefined } }
        : { result: result as 'missing' | 'done' | 'unknown' | 'busy' },
    )
  }

  /** Infobip answered without accepting (429, 4xx, 5xx): the outcome of the submission is known. */
  async settle(ids: string[]): Promise<void> {
    const pipeline = this.#redis.pipeline()
    for (const id of ids) pipeline.hdel(this.keys.message(id), 'inflight')
    await exec(pipeline)
  }

  /** Takes `n` submissions from the global per-second budget; false when it is spent. */
  async reserveSendBudget(n: number, limitPerSecond: number): Promise<boolean> {
    const second = Math.floor(Date.now() / 1000)
    return (await this.#redis.smsReserveBudget(this.keys.sendBudget(second), n, limitPerSecond)) === 1
  }

  /**
   * Finds messages, newest first: walks the most selective index in id order and filters on the
   * other criteria, until `limit` are found. The cursor is the last id returned.
   */
  async search(query: SearchQuery): Promise<{ messages: Message[]; nextCursor: string | null }> {
    const key = query.reference
      ? this.keys.byReference(query.reference)
      : query.to
        ? this.keys.byRecipient(query.to)
        : query.status
          ? this.keys.byStatus(query.status)
          : this.keys.created()
    let max = query.cursor ? `(${query.cursor}` : query.until ? `(${idBound(query.until)}` : '+'
    const min = query.since ? `[${idBound(query.since)}` : '-'
    const found: Message[] = []
    const page = Math.min(Math.max(query.limit * 2, 50), 1000)
    for (;;) {
      const batch = (await this.#redis.call('ZRANGE', key, max, min, 'BYLEX', 'REV', 'LIMIT', 0, page)) as string[]
      if (batch.length === 0) return { messages: found, nextCursor: null }
      for (const message of await this.getMany(batch)) {
        if (!message || !matches(message, query)) continue
        found.push(message)
        if (found.length === query.limit) return { messages: found, nextCursor: message.id }
      }
      if (batch.length < page) return { messages: found, nextCursor: null }
      max = `(${batch[batch.length - 1]}`
    }
  }

  /** Submitted before `before` (ms) and still not final: the reconciler's work list, oldest first. */
  async openBefore(before: number, limit: number): Promise<{ id: string; submittedAt: number }[]> {
    const flat = await this.#redis.zrangebyscore(this.keys.open(), '-inf', before, 'WITHSCORES', 'LIMIT', 0, limit)
    const open: { id: string; submittedAt: number }[] = []
    for (let i = 0; i < flat.length; i += 2) open.push({ id: flat[i]!, submittedAt: Number(flat[i + 1]) })
    return open
  }

  /** How many open messages were submitted before `before` (ms). */
  async countOpenBefore(before: number): Promise<number> {
    return this.#redis.zcount(this.keys.open(), '-inf', before)
  }

  async setStale(count: number): Promise<void> {
    await this.#redis.set(this.keys.stale(), count)
  }

  /**
   * Index entries of messages older than the retention (their records have expired) are removed;
   * per-value indexes expire on their own.
   */
  async trimIndexes(olderThan: Date): Promise<void> {
    const bound = `(${idBound(olderThan.toISOString())}`
    const pipeline = this.#redis.pipeline()
    for (const key of [this.keys.created(), ...this.keys.statusIndexes()]) pipeline.zremrangebylex(key, '-', bound)
    pipeline.zremrangebyscore(this.keys.open(), '-inf', olderThan.getTime())
    await exec(pipeline)
  }

  /** The client's callback URL answered 410 Gone: no more deliveries for this message. */
  async stopCallbacks(id: string): Promise<void> {
    await this.#redis.hset(this.keys.message(id), 'callbacksStopped', '1')
  }

  async callbacksStopped(id: string): Promise<boolean> {
    return (await this.#redis.hget(this.keys.message(id), 'callbacksStopped')) === '1'
  }

  /** Keeps a report for an unknown message id for inspection (capped list, newest first). */
  async keepUnmatched(reports: unknown[]): Promise<void> {
    if (reports.length === 0) return
    const key = this.keys.unmatched()
    await exec(
      this.#redis
        .multi()
        .lpush(key, ...reports.map((r) => JSON.stringify(r)))
        .ltrim(key, 0, UNMATCHED_KEPT - 1),
    )
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

const ENCODING = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/** The smallest message id created at `iso`: ULIDs begin with their time in Crockford base32. */
export function idBound(iso: string): string {
  let ms = Date.parse(iso)
  let time = ''
  for (let i = 0; i < 10; i++) {
    time = ENCODING[ms % 32] + time
    ms = Math.floor(ms / 32)
  }
  return `msg_${time}`
}

function matches(m: Message, q: SearchQuery): boolean {
  return (!q.status || m.status === q.status) && (!q.reference || m.reference === q.reference) && (!q.to || m.to === q.to)
}

function newMessage(m: NewMessage, at: string): Message {
  return {
    id: m.id,
    to: m.to,
    from: m.from,
    text: m.text,
    reference: m.reference ?? null,
    callbackUrl: m.callbackUrl ?? null,
    sendAt: m.sendAt ?? null,
    validityPeriodMinutes: m.validityPeriodMinutes ?? null,
    status: STATUS.QUEUED,
    final: false,
    encoding: m.encoding,
    segments: m.segments,
    attempts: 0,
    infobip: null,
    error: null,
    events: [{ seq: 1, status: STATUS.QUEUED, source: 'api', at }],
    createdAt: at,
    updatedAt: at,
  }
}

/** The hash holds only what is set, to keep records small. */
function toHash(m: Message): Record<string, string | number> {
  const hash: Record<string, string | number> = {
    id: m.id,
    to: m.to,
    from: m.from,
    text: m.text,
    status: m.status,
    encoding: m.encoding,
    segments: m.segments,
    attempts: 0,
    seq: 1,
    e1: eventField(m.events[0]!),
  }
  if (m.reference !== null) hash.reference = m.reference
  if (m.callbackUrl !== null) hash.callbackUrl = m.callbackUrl
  if (m.sendAt !== null) hash.sendAt = m.sendAt
  if (m.validityPeriodMinutes !== null) hash.validityPeriodMinutes = m.validityPeriodMinutes
  return hash
}

/** The record's hash fields that hold report fingerprints, and its events. */
const FINGERPRINT = 'f:'
const EVENT = /^e(\d+)$/

/** An event as the record keeps it: `status|source|at (ms)|infobip status`. */
const eventField = (e: MessageEvent): string => `${e.status}|${e.source}|${Date.parse(e.at)}|${e.infobipStatus ?? ''}`

function eventsOf(h: Record<string, string>): MessageEvent[] {
  const events: MessageEvent[] = []
  for (const [field, value] of Object.entries(h)) {
    const seq = EVENT.exec(field)?.[1]
    if (!seq) continue
    const [status, source, at, infobipStatus] = value.split('|')
    events.push({
      seq: Number(seq),
      status: status as Status,
      source: source as EventSource,
      at: new Date(Number(at)).toISOString(),
      ...(infobipStatus ? { infobipStatus } : {}),
    })
  }
  return events.sort((a, b) => a.seq - b.seq)
}

/** `createdAt` and `updatedAt` are the times of the first and the last event. */
function fromHash(h: Record<string, string>, infobip: string | null): Message {
  const status = h.status as Status
  const events = eventsOf(h)
  return {
    id: h.id!,
    to: h.to!,
    from: h.from!,
    text: h.text!,
    reference: h.reference ?? null,
    callbackUrl: h.callbackUrl ?? null,
    sendAt: h.sendAt ?? null,
    validityPeriodMinutes: h.validityPeriodMinutes ? Number(h.validityPeriodMinutes) : null,
    status,
    final: isFinal(status),
    encoding: h.encoding as Message['encoding'],
    segments: Number(h.segments),
    attempts: Number(h.attempts ?? 0),
    infobip: infobip ? (JSON.parse(infobip) as Record<string, unknown>) : null,
    error: h.error ? (JSON.parse(h.error) as MessageError) : null,
    events,
    createdAt: events[0]!.at,
    updatedAt: events[events.length - 1]!.at,
  }
}

function parseTransition(reply: string[]): TransitionResult {
  const [result, previous, seq, submittedAt, callbackUrl, reference, at] = reply
  const change = (): AppliedChange => ({
    previous: previous as Status,
    seq: Number(seq),
    submittedAt: submittedAt ? Number(submittedAt) : null,
    callbackUrl: callbackUrl || null,
    reference: reference || null,
  })
  switch (result) {
    case 'applied':
      return { result, ...change() }
    case 'ignored':
      return { result, current: previous as Status }
    case 'duplicate':
      return seq ? { result, earlier: { ...change(), at: new Date(Number(at)).toISOString() } } : { result }
    default:
      return { result: 'unmatched' }
  }
}
