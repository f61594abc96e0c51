import { Redis } from 'ioredis'

/** The benchmark's own view of Redis: counting what the service stored, measuring, cleaning up. */

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

export function connect(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: null })
}

/** Every key under `prefix:`; `match` narrows it (glob after the prefix). */
export const scanKeys = (redis: Redis, prefix: string, match = '*'): Promise<string[]> => scan(redis, `${prefix}:${match}`)

async function scan(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

async function unlinkAll(redis: Redis, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) await redis.unlink(...keys.slice(i, i + 1000))
}

/** Deletes every key under the prefix, BullMQ's included (SCAN + UNLINK, like the tests). */
export async function cleanup(redis: Redis, prefix: string): Promise<void> {
  await unlinkAll(redis, await scanKeys(redis, prefix))
}

/** Deletes whatever any scenario of the run left behind (every KEY_PREFIX of the run starts with `runId-`). */
export async function cleanupRun(redis: Redis, runId: string): Promise<void> {
  await unlinkAll(redis, await scan(redis, `${runId}-*`))
}

/** The message record hashes (`prefix:{shard}:msg:<id>`), without their `:infobip` strings. */
export const recordKeys = async (redis: Redis, prefix: string): Promise<string[]> =>
  (await scanKeys(redis, prefix, '{*}:msg:*')).filter((key) => !key.endsWith(':infobip'))

/** How many records are in each status. */
export async function statusCounts(redis: Redis, keys: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < keys.length; i += 5000) {
    const pipeline = redis.pipeline()
    for (const key of keys.slice(i, i + 5000)) pipeline.hget(key, 'status')
    for (const [, status] of (await pipeline.exec()) ?? []) {
      const name = typeof status === 'string' ? status : 'missing'
      counts[name] = (counts[name] ?? 0) + 1
    }
  }
  return counts
}

function infoField(info: string, field: string): number {
  return Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN)
}

/** `used_memory` once UNLINKed keys have really been freed. */
export async function usedMemory(redis: Redis): Promise<number> {
  for (let i = 0; i < 100 && infoField(await redis.info('memory'), 'lazyfree_pending_objects') > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return infoField(await redis.info('memory'), 'used_memory')
}

/** CPU seconds Redis has used so far (user + system). */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu')
  return infoField(info, 'used_cpu_user') + infoField(info, 'used_cpu_sys')
}

/** Σ MEMORY USAGE (exact: SAMPLES 0) of every key under the prefix: what its keys take, whoever else writes. */
export async function prefixMemory(redis: Redis, prefix: string): Promise<number> {
  const keys = await scanKeys(redis, prefix)
  let bytes = 0
  for (let i = 0; i < keys.length; i += 5000) {
    const pipeline = redis.pipeline()
    for (const key of keys.slice(i, i + 5000)) pipeline.memory('USAGE', key, 'SAMPLES', 0)
    for (const [, usage] of (await pipeline.exec()) ?? []) bytes += Number(usage ?? 0)
  }
  return bytes
}
