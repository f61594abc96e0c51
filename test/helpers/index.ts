import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Cluster } from 'ioredis'
import { pino } from 'pino'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { buildSimulator } from '../../src/simulator/app.js'
import { createRedis, type RedisClient, type RedisSettings } from '../../src/redis.js'
import { startWorkers } from '../../workers/start.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/**
 * `TEST_REDIS=cluster npm test` runs the suite against the Redis Cluster of .ci/redis-topologies.sh
 * (masters on 7000-7002), with QUEUE_PARTITIONS=3; files that are about one Redis skip themselves.
 */
export const TEST_CLUSTER = process.env.TEST_REDIS === 'cluster'
export const CLUSTER_NODES = process.env.TEST_CLUSTER_NODES ?? '127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002'
/** Where the tests' Redis is, for helpers handed no config. */
export const TEST_REDIS: RedisSettings = TEST_CLUSTER ? { REDIS_URL, REDIS_CLUSTER_NODES: CLUSTER_NODES, REDIS_TLS: false } : { REDIS_URL, REDIS_TLS: false }
export const API_KEY = 'test-api-key-0123456789'
export const DLR_TOKEN = 'test-dlr-token-0123456789'
export const INFOBIP_KEY = 'test-infobip-key'
/** Standard Webhooks secret: whsec_ + base64 of 24+ random bytes. */
export const CALLBACK_SECRET = `whsec_${Buffer.from('test-callback-secret-0123456789').toString('base64')}`
export const AUTH = { authorization: `Bearer ${API_KEY}` }
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** A config of its own for one test file: a unique KEY_PREFIX so files never see each other's keys. */
export function testConfig(name: string, env: Record<string, string | number | boolean> = {}): Config {
  return loadConfig(testEnv(name, env))
}

export function testEnv(name: string, env: Record<string, string | number | boolean> = {}): Record<string, string> {
  const base: Record<string, string | number | boolean> = {
    NODE_ENV: 'test',
    REDIS_URL,
    ...(TEST_CLUSTER ? { REDIS_CLUSTER_NODES: CLUSTER_NODES, QUEUE_PARTITIONS: 3 } : {}),
    KEY_PREFIX: `test-${name}-${randomBytes(4).toString('hex')}`,
    API_KEYS: `${API_KEY},second-key-0123456789`,
    DLR_WEBHOOK_TOKEN: DLR_TOKEN,
    INFOBIP_BASE_URL: 'http://127.0.0.1:9',
    INFOBIP_API_KEY: INFOBIP_KEY,
    SEND_BACKOFF_MS: 20,
    SIM_DLR_DELAY_MS: 20,
    CALLBACK_ALLOW_PRIVATE: true,
    CALLBACK_SIGNING_SECRET: CALLBACK_SECRET,
    LOG_LEVEL: 'silent',
    ...env,
  }
  return Object.fromEntries(Object.entries(base).map(([k, v]) => [k, String(v)]))
}

/** One delivery a callback receiver got: its headers, its body as sent, and that body parsed. */
export interface ReceivedCallback {
  headers: IncomingHttpHeaders
  body: string
  json: { eventId: string; messageId: string; seq: number; status: string; previousStatus: string; final: boolean; reference: string | null }
}

/** A client's callback receiver over real HTTP; `answer` decides each response's status code. */
export async function callbackReceiver(t: Test, answer: (r: ReceivedCallback, n: number) => number = () => 204) {
  const received: ReceivedCallback[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      const r = { headers: req.headers, body, json: JSON.parse(body) as ReceivedCallback['json'] }
      received.push(r)
      res.writeHead(answer(r, received.length)).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/sms-status`, received }
}

/** Writes a tenants file (docs/tenants.md) for one test; removed when the test ends. Returns its path. */
export function writeTenantsFile(t: Test, tenants: Record<string, Record<string, unknown>>): string {
  const path = join(tmpdir(), `tenants-${randomBytes(6).toString('hex')}.json`)
  writeFileSync(path, JSON.stringify({ tenants }))
  t.teardown(() => rmSync(path, { force: true }))
  return path
}

/** Deletes every key under the prefix (and the prefix's BullMQ queues), in the Redis of `where` (a config). */
export async function cleanup(prefix: string, where: RedisSettings | string = TEST_REDIS): Promise<void> {
  const redis = createRedis(where, 'worker', { lazyConnect: false })
  try {
    // On a cluster, every master holds some of the keys, and a command takes keys of one slot.
    if (redis instanceof Cluster && redis.status !== 'ready') await once(redis, 'ready')
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
        cursor = next
        if (keys.length > 0) await Promise.all(keys.map((key) => redis.unlink(key)))
      } while (cursor !== '0')
    }
  } finally {
    redis.disconnect()
  }
}

/** Every key under the prefix, on every master of a cluster. */
export async function keysUnder(redis: RedisClient, pattern: string): Promise<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
  return (await Promise.all(nodes.map((node) => node.keys(pattern)))).flat()
}

/** The API, built as tests build it; closed and its keys removed when the test ends. */
export async function buildTestApp(t: Test, config: Config) {
  const app = await buildApp(config, { logger: false })
  t.teardown(async () => {
    await app.close()
    await cleanup(config.KEY_PREFIX, config)
  })
  return app
}

/** The simulator on a free port; returns its base URL. */
export async function startSimulator(t: Test, config: Config): Promise<{ url: string; app: ReturnType<typeof buildSimulator> }> {
  const app = buildSimulator(config)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address() as { port: number }
  return { url: `http://127.0.0.1:${address.port}`, app }
}

/** Polls `check` every `everyMs` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  what = 'condition',
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** A real worker process (`workers/index.ts` through tsx), killed when the test ends. */
export function spawnWorker(t: Test, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/index.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  })
  Object.defineProperty(child, 'output', { get: () => output })
  return child
}

/** Waits until a spawned worker has logged that it started (LOG_LEVEL must be info or lower). */
export async function workerReady(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  await waitFor(() => (child as ChildProcess & { output: string }).output.includes('workers started'), timeoutMs, 'worker start')
}

/**
 * The whole system in this process: the simulator, the API listening on a free port (so that the
 * simulator's reports reach it) and the workers, all on one KEY_PREFIX; closed when the test ends.
 */
export async function startSystem(
  t: Test,
  name: string,
  env: Record<string, string | number | boolean> = {},
  simEnv: Record<string, string | number | boolean> = {},
) {
  const sim = await startSimulator(t, testConfig(`${name}-sim`, simEnv))
  const base = testConfig(name, { INFOBIP_BASE_URL: sim.url, ...env })
  const app = await buildTestApp(t, base)
  const apiUrl = await app.listen({ port: 0, host: '127.0.0.1' })
  const config: Config = { ...base, PUBLIC_BASE_URL: apiUrl }
  const workers = await startWorkers(config, pino({ level: 'silent' }))
  t.teardown(async () => {
    await workers.close()
    // The workers' last metrics flush may land after the app's own cleanup.
    await cleanup(config.KEY_PREFIX, config)
  })
  return { sim, app, config, apiUrl }
}

/**
 * Counts the writes a Redis connection makes to its socket: ioredis writes a whole pipeline or MULTI
 * at once, so this is the number of round trips. Writes whose start matches `ignore` (background
 * work) are not counted. Restored when the test ends.
 */
export function countWrites(t: Test, redis: RedisClient, ignore?: RegExp): { reset(): void; readonly count: number } {
  // On a cluster, a pipeline goes to one node: writes are counted on every node's connection.
  const connections = redis instanceof Cluster ? redis.nodes().filter((node) => node.stream) : [redis]
  let count = 0
  for (const connection of connections) {
    const stream = (connection as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream
    const write = stream.write
    stream.write = function (this: unknown, ...args: unknown[]) {
      if (!ignore?.test(String(args[0]).slice(0, 200))) count++
      return write.apply(this, args)
    }
    t.teardown(() => {
      stream.write = write
    })
  }
  return {
    reset: () => void (count = 0),
    get count() {
      return count
    },
  }
}
