import { partitionPrefix } from '../src/queues.js'
import { Queue } from 'bullmq'
import type { Cluster, Redis } from 'ioredis'
import { API_KEY, DLR_TOKEN, INFOBIP_KEY } from './load.js'
import { assertAlive, freePort, httpReady, start, stop, until, type Child, type StartOptions } from './processes.js'
import { REDIS_URL } from './redis.js'

/** The service's own processes, started through their real entry points with a bench environment. */

export interface BenchSettings extends StartOptions {
  logLevel: string
}

/** What every process of one scenario shares; KEY_PREFIX keeps scenarios apart in Redis. */
function serviceEnv(settings: BenchSettings, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'production',
    REDIS_URL,
    KEY_PREFIX: prefix,
    HOST: '127.0.0.1',
    API_KEYS: API_KEY,
    DLR_WEBHOOK_TOKEN: DLR_TOKEN,
    INFOBIP_API_KEY: INFOBIP_KEY,
    INFOBIP_BASE_URL: 'http://127.0.0.1:9',
    LOG_LEVEL: settings.logLevel,
    // The per-key limit would turn a benchmark into a test of the limiter.
    RATE_LIMIT_PER_MINUTE: '1000000000',
    ...extra,
  }
}

export interface Http {
  child: Child
  url: string
}

/** Starts `entry` on a free port and waits for `readyPath`; a process that never gets ready is stopped. */
async function startHttp(
  name: string,
  entry: string,
  env: (port: number) => Record<string, string>,
  readyPath: string,
  settings: BenchSettings,
): Promise<Http> {
  const port = await freePort()
  const child = start(name, entry, env(port), settings)
  const url = `http://127.0.0.1:${port}`
  try {
    await httpReady(child, `${url}${readyPath}`)
  } catch (error) {
    await stop(child)
    throw error
  }
  return { child, url }
}

/** `src/server.ts`, the API as `npm start` runs it, on a free port. */
export function startApi(settings: BenchSettings, name: string, prefix: string, extra: Record<string, string> = {}): Promise<Http> {
  return startHttp(name, 'src/server.ts', (port) => serviceEnv(settings, prefix, { ...extra, PORT: String(port) }), '/health', settings)
}

/** `bench/otlp-sink.ts`: where the tracing runs export their spans. */
export function startOtlpSink(settings: BenchSettings): Promise<Http> {
  return startHttp('otlp-sink', 'bench/otlp-sink.ts', (port) => ({ PORT: String(port) }), '/stats', settings)
}

export async function sinkStats(sink: Http): Promise<{ requests: number; bytes: number }> {
  return (await (await fetch(`${sink.url}/stats`)).json()) as { requests: number; bytes: number }
}

/** `src/simulator/server.ts` on a free port. */
export function startSimulator(settings: BenchSettings, latencyMs: number): Promise<Http> {
  // The simulator stands in for Infobip: its request logs would only take CPU from the service.
  const env = (port: number) => serviceEnv(settings, 'bench-sim', { SIM_PORT: String(port), SIM_LATENCY_MS: String(latencyMs), LOG_LEVEL: 'warn' })
  return startHttp('simulator', 'src/simulator/server.ts', env, '/_sim/stats', settings)
}

export function startBare(settings: BenchSettings): Promise<Http> {
  return startHttp('bare-fastify', 'bench/bare-server.ts', (port) => ({ PORT: String(port) }), '/health', settings)
}

/**
 * `count` processes of `workers/index.ts` running `queues`; resolves once BullMQ sees them all
 * connected to the first of those queues.
 */
export async function startWorkerProcesses(
  settings: BenchSettings,
  redis: Redis | Cluster,
  name: string,
  prefix: string,
  count: number,
  queues: string,
  extra: Record<string, string> = {},
  /** The BullMQ prefix of the first queue's (first) partition, where the workers are counted. */
  queuePrefix = partitionPrefix({ KEY_PREFIX: prefix }, 0),
): Promise<Child[]> {
  const children = Array.from({ length: count }, (_, i) =>
    start(`${name}-${i + 1}`, 'workers/index.ts', serviceEnv(settings, prefix, { WORKER_QUEUES: queues, ...extra }), settings),
  )
  const queue = new Queue(queues.split(',')[0]!, { connection: redis, prefix: queuePrefix })
  try {
    await until(
      async () => {
        for (const child of children) assertAlive(child)
        return (await queue.getWorkersCount()) >= count
      },
      `${count} ${queues} worker process(es)`,
      30_000,
      100,
    )
  } catch (error) {
    await Promise.all(children.map((child) => stop(child)))
    throw error
  } finally {
    await queue.close()
  }
  return children
}

/** Jobs not yet finished, whatever state they wait in. */
export async function pendingJobs(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children')
  return Object.values(counts).reduce((a, b) => a + b, 0)
}

export interface SimStats {
  requests: number
  accepted: number
  reportsPosted: number
  reportPostsFailed: number
  reportsDropped: number
}

export async function simStats(sim: Http): Promise<SimStats> {
  return (await (await fetch(`${sim.url}/_sim/stats`)).json()) as SimStats
}
