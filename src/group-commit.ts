import type { Config } from './config.js'
import { sendJobOptions, type Partitioned, type SendJob } from './queues.js'
import type { RedisClient } from './redis.js'
import { shardOf } from './shards.js'
import type { MessageStore } from './store/message-store.js'
import { inBatches, SUPPRESSED_ERROR, type Message, type NewMessage } from './domain/message.js'
import { STATUS } from './domain/status.js'
import { madeChange, type AfterChanges } from './changes.js'
import { acknowledge, writesFrom } from './durability.js'

/** A group is written at once when it reaches this many messages, rather than at the end of the turn. */
const MAX_GROUP = 1000

interface Waiting {
  messages: NewMessage[]
  resolve: (stored: Message[]) => void
  reject: (error: unknown) => void
}

/**
 * Group commit of new messages. The messages of every request that reaches this point in the same
 * event-loop turn are written together: their records in one MULTI per shard, their send jobs (up to
 * 100 messages of one shard each, whichever request they came from) in one addBulk per partition, and
 * one ZREM per shard from the outbox. Under load, three Redis round trips per request become three
 * per turn, and single messages share send jobs, which the send workers submit to Infobip in one
 * request each.
 *
 * A group is all or nothing: if its jobs cannot be added its records are removed again, and every
 * request in it fails (503), so no request is answered for messages that are not stored.
 */
export class GroupCommit {
  readonly #store: MessageStore
  readonly #queue: Partitioned<SendJob>
  readonly #config: Config
  #group: Waiting[] = []
  #size = 0

  readonly #afterChanges: AfterChanges
  /** The store's and the queue's connections: a group's writes are acknowledged on both (REDIS_MIN_REPLICAS). */
  readonly #connections: RedisClient[]

  constructor(deps: { store: MessageStore; sendQueue: Partitioned<SendJob>; config: Config; afterChanges: AfterChanges; connections: RedisClient[] }) {
    this.#store = deps.store
    this.#queue = deps.sendQueue
    this.#config = deps.config
    this.#afterChanges = deps.afterChanges
    this.#connections = deps.connections
  }

  /** Resolves with the stored messages once they and their send jobs exist. */
  write(messages: NewMessage[]): Promise<Message[]> {
    return new Promise((resolve, reject) => {
      if (this.#group.length === 0) setImmediate(() => this.#flush())
      this.#group.push({ messages, resolve, reject })
      this.#size += messages.length
      if (this.#size >= MAX_GROUP) this.#flush()
    })
  }

  #flush(): void {
    const group = this.#group
    if (group.length === 0) return
    this.#group = []
    this.#size = 0
    commit(
      this.#store,
      this.#queue,
      this.#config,
      group.flatMap((w) => w.messages),
      this.#afterChanges,
      this.#connections,
    ).then(
      (stored) => {
        let offset = 0
        for (const waiting of group) {
          waiting.resolve(stored.slice(offset, offset + waiting.messages.length))
          offset += waiting.messages.length
        }
      },
      (error: unknown) => {
        for (const waiting of group) waiting.reject(error)
      },
    )
  }
}

/**
 * Records (in the outbox), then their jobs, then out of the outbox; undone if the jobs fail. A
 * scheduled message's record names its delayed job, which a cancel removes. With REDIS_MIN_REPLICAS,
 * the replicas confirm all of it before any request of the group is answered.
 */
async function commit(
  store: MessageStore,
  queue: Partitioned<SendJob>,
  config: Config,
  messages: NewMessage[],
  afterChanges: AfterChanges,
  connections: RedisClient[],
): Promise<Message[]> {
  // On a cluster, the WAIT goes to each shard written; the slots are only worked out when it is needed.
  const writes = writesFrom(connections, config.REDIS_MIN_REPLICAS > 0 ? store.slotsOf(messages.map((m) => m.id)) : [])
  const jobs = sendJobs(messages, config)
  const byId = new Map(messages.map((m) => [m.id, m]))
  for (const job of jobs) if (job.opts.delay !== undefined) for (const id of job.data.ids) byId.get(id)!.job = job.opts.jobId
  const stored = await store.create(messages)
  const ids = stored.map((m) => m.id)
  try {
    await queue.addBulk(jobs)
  } catch (error) {
    await store.remove(messages).catch(() => {
      // Redis is gone: the records stay in the outbox, from which the send workers enqueue them.
    })
    throw error
  }
  // Awaited so that no write of a request follows its answer; a failure is harmless (the outbox
  // sweeper finds jobs that exist), so it does not fail the request.
  await store.removeFromOutbox(ids).catch(() => {})
  await suppressedAtOnce(messages, stored, afterChanges)
  await acknowledge(writes, config)
  return stored
}

/** Messages stored REJECTED because their numbers are suppressed: their callbacks and metrics. */
async function suppressedAtOnce(messages: NewMessage[], stored: Message[], afterChanges: AfterChanges): Promise<void> {
  const changes = stored.flatMap((m, i) => {
    if (m.error?.code !== SUPPRESSED_ERROR.code) return []
    const change = { previous: STATUS.QUEUED, seq: 2, submittedAt: null, callbackUrl: m.callbackUrl, reference: m.reference, tenant: messages[i]!.tenant }
    return [madeChange(m.id, change, { status: STATUS.REJECTED, source: 'api', error: SUPPRESSED_ERROR })]
  })
  if (changes.length > 0)
    await afterChanges(
      changes.map(([t]) => t),
      changes.map(([, r]) => r),
    )
}

/**
 * Messages of one tenant and one shard with the same send time share jobs of up to 100 (a job names
 * its tenant, for the logs and the dashboard); a job's id is its first message's id, which names the
 * shard, and so the queue partition.
 */
export function sendJobs(messages: { id: string; tenant: string; sendAt?: string | null | undefined }[], config: Config) {
  const groups = new Map<string, { tenant: string; sendAt: string | undefined; ids: string[] }>()
  for (const m of messages) {
    const key = `${m.tenant} ${shardOf(m.id)} ${m.sendAt ?? ''}`
    const group = groups.get(key) ?? { tenant: m.tenant, sendAt: m.sendAt ?? undefined, ids: [] }
    group.ids.push(m.id)
    groups.set(key, group)
  }
  const options = sendJobOptions(config)
  const now = Date.now()
  return [...groups.values()].flatMap(({ tenant, sendAt, ids: all }) => {
    const delay = sendAt ? Math.max(0, Date.parse(sendAt) - now) : 0
    return [...inBatches(all)].map((ids) => ({ name: 'send', data: { ids, tenant }, opts: { ...options, jobId: ids[0]!, ...(delay > 0 ? { delay } : {}) } }))
  })
}
