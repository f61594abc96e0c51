import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Config } from './config.js'

/** A connection in any of the deployments: one Redis (single, or Sentinel's master) or a Cluster. */
export type RedisClient = Redis | Cluster

/** The variables that say where Redis is (docs/operations.md#redis-deployments). */
export type RedisSettings = Pick<
  Config,
  'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_SENTINEL_NAME' | 'REDIS_CLUSTER_NODES' | 'REDIS_USERNAME' | 'REDIS_PASSWORD' | 'REDIS_TLS'
>

/** A single Redis at this URL (scripts and tests that are handed a URL). */
const single = (url: string): RedisSettings => ({ REDIS_URL: url, REDIS_TLS: false })

/**
 * Every connection of every process, in one of the deployments (REDIS_CLUSTER_NODES wins over
 * REDIS_SENTINELS, which wins over REDIS_URL). Producers (the API) fail fast: no offline queue, so a
 * request meets a Redis outage or a failover with an error (mapped to 503) instead of waiting.
 * Workers wait: their commands ride out a Redis restart or a failover.
 */
export function createRedis(where: RedisSettings | string, role: 'producer' | 'worker', extra: RedisOptions = {}): RedisClient {
  const settings = typeof where === 'string' ? single(where) : where
  if (settings.REDIS_CLUSTER_NODES) return createCluster(settings, role, extra)
  const options: RedisOptions = {
    lazyConnect: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    // A master demoted by a failover answers writes with READONLY until this connection moves on:
    // reconnecting asks the sentinels for the new master, and the command fails (503 in the API).
    reconnectOnError: (error) => error.message.startsWith('READONLY'),
    ...(role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true }),
    ...extra,
  }
  const redis = settings.REDIS_SENTINELS ? new Redis({ ...sentinelOptions(settings), ...options }) : new Redis(settings.REDIS_URL, options)
  if (settings.REDIS_SENTINELS) followSentinels(redis)
  // Connection errors surface through the commands that fail (503 in the API, retries in workers)
  // and through /ready; an unhandled 'error' event would only print a stack trace per reconnect.
  redis.on('error', () => {})
  return redis
}

/**
 * Cluster mode: ioredis learns the slots from the nodes given and follows MOVED/ASK redirections and
 * failovers by itself. A producer's commands still fail fast (no offline queue, one retry), so that
 * a request during a failover is a 503; a worker's wait for the cluster to recover.
 */
function createCluster(settings: RedisSettings, role: 'producer' | 'worker', extra: RedisOptions): Cluster {
  const { enableAutoPipelining, lazyConnect, ...perNode } = extra
  const nodeOptions: RedisOptions = {
    ...(settings.REDIS_USERNAME ? { username: settings.REDIS_USERNAME } : {}),
    ...(settings.REDIS_PASSWORD ? { password: settings.REDIS_PASSWORD } : {}),
    ...(settings.REDIS_TLS ? { tls: {} } : {}),
    ...(role === 'producer' ? { maxRetriesPerRequest: 1, connectTimeout: 2000 } : { maxRetriesPerRequest: null }),
    ...perNode,
  }
  const options: ClusterOptions = {
    lazyConnect: lazyConnect ?? true,
    enableAutoPipelining: enableAutoPipelining ?? false,
    redisOptions: nodeOptions,
    clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
    // The slots move on a failover: ask again soon rather than wait for the next MOVED.
    slotsRefreshInterval: 5000,
    ...(role === 'producer' ? { enableOfflineQueue: false, maxRedirections: 4, retryDelayOnFailover: 200 } : { enableReadyCheck: true }),
  }
  const cluster = new Cluster(hostPorts(settings.REDIS_CLUSTER_NODES!), options)
  cluster.on('error', () => {})
  return cluster
}

/**
 * Two ioredis 6 behaviours in Sentinel mode. It closes the failover detector's sentinel connections on
 * disconnect() but not after quit(), and they would keep the process alive: an ended connection is
 * disconnected as well. And a failover announced while the connection is reconnecting ends it for
 * good ("Connection is closed.", status `end`, no further retry): a connection that ends without
 * having been closed here connects again.
 */
function followSentinels(redis: Redis): void {
  let closing = false
  const quit = redis.quit.bind(redis)
  const disconnect = redis.disconnect.bind(redis)
  redis.quit = (...args: Parameters<typeof quit>) => {
    closing = true
    return quit(...args)
  }
  redis.disconnect = (reconnect?: boolean) => {
    if (!reconnect) closing = true
    disconnect(reconnect)
  }
  redis.on('end', () => {
    if (closing) disconnect()
    else setTimeout(() => redis.connect().catch(() => {}), 200).unref()
  })
}

/**
 * Sentinel mode: ioredis asks the sentinels for the master, and reconnects to the new one when they
 * announce a failover (`failoverDetector` listens for +switch-master). The sentinels get the same
 * password (a sentinel without one accepts it) and the same TLS as the master and replicas.
 */
function sentinelOptions(settings: RedisSettings): RedisOptions {
  const tls = settings.REDIS_TLS ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}
  return {
    sentinels: hostPorts(settings.REDIS_SENTINELS!),
    name: settings.REDIS_SENTINEL_NAME!,
    ...(settings.REDIS_USERNAME ? { username: settings.REDIS_USERNAME } : {}),
    ...(settings.REDIS_PASSWORD ? { password: settings.REDIS_PASSWORD, sentinelPassword: settings.REDIS_PASSWORD } : {}),
    ...tls,
    failoverDetector: true,
    sentinelRetryStrategy: (times) => Math.min(times * 200, 2000),
  }
}

/** `host:port,[::1]:port` → ioredis addresses. */
export const hostPorts = (list: string): { host: string; port: number }[] =>
  list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const colon = entry.lastIndexOf(':')
      return { host: entry.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(entry.slice(colon + 1)) }
    })

/** Where Redis is, without credentials, for the start-up message. */
function describe(settings: RedisSettings): string {
  if (settings.REDIS_CLUSTER_NODES) return `REDIS_CLUSTER_NODES=${settings.REDIS_CLUSTER_NODES}`
  if (settings.REDIS_SENTINELS) return `REDIS_SENTINELS=${settings.REDIS_SENTINELS} (master ${settings.REDIS_SENTINEL_NAME})`
  const where = new URL(settings.REDIS_URL)
  return `REDIS_URL=${where.protocol}//${where.host}${where.pathname}`
}

/** The one line every command prints when Redis cannot be reached at start-up. */
export const redisUnreachable = (where: RedisSettings | string): string =>
  `Redis is not reachable at ${describe(typeof where === 'string' ? single(where) : where)}: start it (for example \`redis-server --daemonize yes\` or \`docker compose up -d redis\`) or set REDIS_URL (or REDIS_SENTINELS, or REDIS_CLUSTER_NODES).`

/**
 * Connects, or rejects within `timeoutMs` with the one-line explanation above. Used at start-up so
 * that no process loops on connection errors.
 */
export async function connectOrExplain(redis: RedisClient, where: RedisSettings | string, timeoutMs = 3000): Promise<void> {
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(redisUnreachable(where))), timeoutMs).unref())
  try {
    await Promise.race([redis.connect().then(() => redis.ping()), timer])
  } catch (error) {
    redis.disconnect()
    const message = (error as Error).message
    throw new Error(message.startsWith('Redis is not reachable') ? message : redisUnreachable(where), { cause: error })
  }
}
