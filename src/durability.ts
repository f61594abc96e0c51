import { Cluster, type Redis } from 'ioredis'
import type { Config } from './config.js'
import { HttpError } from './errors.js'
import type { RedisClient } from './redis.js'

type Settings = Pick<Config, 'REDIS_MIN_REPLICAS' | 'REDIS_WAIT_TIMEOUT_MS'>

/**
 * Connections, the socket each was on when the writes to acknowledge began, and on a cluster a key
 * of each hash slot written (the WAIT goes to the node that holds it).
 */
export interface Writes {
  connections: RedisClient[]
  sockets: unknown[]
  slots: string[]
}

/**
 * Call before writes that are not made just before acknowledge(): it then knows where they went.
 * `slots` names a key of each slot written, for a cluster; one Redis ignores them.
 */
export const writesFrom = (connections: RedisClient[], slots: string[] = []): Writes => ({
  connections,
  sockets: connections.map((r) => (r instanceof Cluster ? undefined : r.stream)),
  slots: [...new Set(slots)],
})

/**
 * REDIS_MIN_REPLICAS (docs/operations.md#redis-deployments): before an answer acknowledges writes,
 * `WAIT n REDIS_WAIT_TIMEOUT_MS` on every connection that made them (on a cluster, on the master of
 * every slot written); fewer replicas than n → 503. A connection that changed socket since the writes
 * (a reconnect, a failover) proves nothing: 503 too.
 */
export async function acknowledge(writes: Writes, config: Settings): Promise<void> {
  const n = config.REDIS_MIN_REPLICAS
  if (n === 0) return
  const { connections, sockets, slots } = writes
  const counts = await Promise.all(
    connections.flatMap((redis, i) =>
      redis instanceof Cluster ? slots.map((key) => clusterReplicasThatHave(redis, key, config)) : [replicasThatHave(redis, sockets[i], config)],
    ),
  )
  const fewest = Math.min(...counts)
  if (fewest < n) throw new ReplicasUnavailable(fewest, n, config.REDIS_WAIT_TIMEOUT_MS)
}

/** The write was made but may not survive a failover: a 503 that says so (the request may be retried). */
export class ReplicasUnavailable extends HttpError {
  constructor(confirmed: number, required: number, timeoutMs: number) {
    super(
      503,
      `Only ${confirmed} of the ${required} Redis replicas required (REDIS_MIN_REPLICAS) confirmed the write within ${timeoutMs} ms: it may have been applied; retry (with the same Idempotency-Key)`,
      'REPLICAS_UNAVAILABLE',
    )
  }
}

/**
 * On a cluster, a WAIT must reach the master of the slot written, through the connection that wrote:
 * a pipeline goes to the node of its keys' slot, and a keyless WAIT rides along with a read of a key
 * in that slot. A failover in between makes the WAIT fail or reach a master without the writes'
 * replicas: either way it counts too few replicas, and the answer is a 503.
 */
async function clusterReplicasThatHave(cluster: Cluster, key: string, config: Settings): Promise<number> {
  try {
    const replies = await cluster.pipeline().exists(key).wait(config.REDIS_MIN_REPLICAS, config.REDIS_WAIT_TIMEOUT_MS).exec()
    const [error, count] = replies?.[1] ?? [new Error('no reply')]
    return error ? 0 : (count as number)
  } catch {
    return 0
  }
}

type Answer = { count: number; socket: unknown }

/** Per connection: the WAIT in flight, and the one that will follow it. */
interface Waits {
  sent?: Promise<Answer>
  next?: Promise<Answer>
}
const waitsOf = new WeakMap<Redis, Waits>()

/**
 * A WAIT covers the writes its connection made before it was sent. Requests whose writes are answered
 * while one is in flight share the next one, so that a replica outage costs every waiting request
 * one timeout or two, instead of a line of WAITs that each block the connection for the timeout.
 */
async function replicasThatHave(redis: Redis, socket: unknown, config: Settings): Promise<number> {
  const waits = waitsOf.get(redis) ?? {}
  waitsOf.set(redis, waits)
  if (waits.sent && !waits.next) {
    const after = waits.sent.catch(() => undefined)
    waits.next = after.then(() => send(redis, waits, config))
  }
  try {
    const answer = await (waits.next ?? send(redis, waits, config))
    // ioredis resends a command cut off by a reconnect: a WAIT answered by another node says nothing.
    return answer.socket === socket && redis.stream === socket ? answer.count : 0
  } catch {
    return 0
  }
}

function send(redis: Redis, waits: Waits, config: Settings): Promise<Answer> {
  waits.next = undefined
  const socket = redis.stream
  const sent = redis
    .wait(config.REDIS_MIN_REPLICAS, config.REDIS_WAIT_TIMEOUT_MS)
    .then((count) => ({ count, socket: redis.stream === socket ? socket : undefined }))
  waits.sent = sent
  const settled = () => {
    if (waits.sent === sent) waits.sent = undefined
  }
  sent.then(settled, settled)
  return sent
}
