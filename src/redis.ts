import { Redis, type RedisOptions } from 'ioredis'

/**
 * Producers (the API) fail fast: no offline queue, so a request meets a Redis outage with an error
 * (mapped to 503) instead of waiting. Workers wait: their commands ride out a Redis restart.
 */
export function createRedis(url: string, role: 'producer' | 'worker', extra: RedisOptions = {}): Redis {
  const options: RedisOptions =
    role === 'producer' ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 } : { maxRetriesPerRequest: null, enableReadyCheck: true }
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: (times) => Math.min(times * 200, 2000), ...options, ...extra })
  // Connection errors surface through the commands that fail (503 in the API, retries in workers)
  // and through /ready; an unhandled 'error' event would only print a stack trace per reconnect.
  redis.on('error', () => {})
  return redis
}

/** The one line every command prints when Redis cannot be reached at start-up. */
export const redisUnreachable = (url: string): string => {
  const where = new URL(url)
  return `Redis is not reachable at REDIS_URL=${where.protocol}//${where.host}${where.pathname}: start it (for example \`redis-server --daemonize yes\` or \`docker compose up -d redis\`) or set REDIS_URL.`
}

/**
 * Connects, or rejects within `timeoutMs` with the one-line explanation above. Used at start-up so
 * that no process loops on connection errors.
 */
export async function connectOrExplain(redis: Redis, url: string, timeoutMs = 3000): Promise<void> {
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(redisUnreachable(url))), timeoutMs).unref())
  try {
    await Promise.race([redis.connect().then(() => redis.ping()), timer])
  } catch (error) {
    redis.disconnect()
    const message = (error as Error).message
    throw new Error(message.startsWith('Redis is not reachable') ? message : redisUnreachable(url), { cause: error })
  }
}
