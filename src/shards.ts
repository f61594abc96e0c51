import calculateSlot from 'cluster-key-slot'

/**
 * Shards (docs/store.md#shards). QUEUE_PARTITIONS splits the store and every queue into that many
 * shards; everything of one shard (message records, the tenants' index entries and idempotency keys
 * of that shard, its copy of the suppression lists, its outbox, open and stale indexes, and its
 * partition of every queue) carries the shard's hash tag, so that on Redis Cluster every script and
 * every MULTI touches one hash slot. On a single Redis the tags cost nothing.
 *
 * A message id names its shard: the eleventh character of its ULID (the first random one) is the
 * shard's number in ULID's alphabet, so any process finds a record from the id alone.
 */
export const MAX_PARTITIONS = 32

/** ULID's alphabet (Crockford's base 32): the shard's character in an id. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
/** Where the shard's character sits in `msg_<ULID>`: after `msg_` and the ten time characters. */
const SHARD_AT = 4 + 10

const SLOTS = 16384

/** The id with the shard's character put in place (it replaces a random one). */
export function inShard(id: string, shard: number): string {
  return id.slice(0, SHARD_AT) + ALPHABET[shard]! + id.slice(SHARD_AT + 1)
}

/** The shard an id names (an id that names none, such as a foreign one, is shard 0's). */
export function shardOf(id: string): number {
  return Math.max(0, ALPHABET.indexOf(id.charAt(SHARD_AT)))
}

/**
 * The hash tag of each shard, the same in every process. A tag is aimed at a point of the slot space
 * so that shards spread evenly over a cluster whose slots are split evenly between its masters (what
 * `redis-cli --cluster create` and the managed services do): shards 0, 1, 2 fall in different thirds,
 * 3, 4, 5 in the middle of each third, and so on by halving, so that 3 masters carry N/3 shards each
 * for N a multiple of 3, and 2^k masters are close to even too. A shard's tag never depends on
 * QUEUE_PARTITIONS, which may therefore be raised without moving anything.
 */
export const SHARD_TAGS: readonly string[] = Array.from({ length: MAX_PARTITIONS }, (_, shard) => {
  // Within its third, a shard's point stays 1/16 of a third away from the edges.
  const within = 1 / 16 + (radicalInverse(Math.floor(shard / 3)) * 7) / 8
  const target = Math.floor((((shard % 3) + within) / 3) * SLOTS)
  const window = SLOTS / 256
  for (let k = 0; ; k++) {
    const tag = `${shard}.${k}`
    if (Math.abs(calculateSlot(tag) - target) <= window) return tag
  }
})

/** 0, 1/2, 1/4, 3/4, 1/8, …: the base-2 van der Corput sequence. */
function radicalInverse(n: number): number {
  let result = 0
  for (let f = 0.5; n > 0; n >>= 1, f /= 2) if (n & 1) result += f
  return result
}

/** The shard of something that is not a message (an idempotency key, a phone number), by its hash. */
export const shardOfKey = (key: string, partitions: number): number => calculateSlot(key) % partitions

/** The shards 0 … partitions − 1. */
export const shardsOf = (partitions: number): number[] => Array.from({ length: partitions }, (_, i) => i)

/** Items grouped by shard, each group in the items' order; only shards that have some. */
export function byShard<T>(items: readonly T[], shard: (item: T) => number): Map<number, T[]> {
  const groups = new Map<number, T[]>()
  for (const item of items) {
    const s = shard(item)
    const group = groups.get(s)
    if (group) group.push(item)
    else groups.set(s, [item])
  }
  return groups
}
