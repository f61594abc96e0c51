import { DEFAULT_TENANT } from '../../src/tenants.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { Pool } from 'undici'
import { STATUS, type Status } from '../../src/domain/status.js'
import { partitionPrefix, type QueueName } from '../../src/queues.js'
import { makeKeys, type Keys } from '../../src/store/keys.js'
import { MessageStore } from '../../src/store/message-store.js'
import { API_KEY, DLR_TOKEN, ROOT, testEnv, waitFor } from '../helpers/index.js'

/**
 * The chaos suite's test bench: a redis-server of its own (AOF on, in a temporary directory, so that
 * it can be stopped and started again), and the service's real processes — API (`src/server.ts`),
 * workers (`workers/index.ts`), simulator (`src/simulator/server.ts`) — each `node --import tsx`,
 * listening on 127.0.0.1 only. Everything started here is killed, and the directory removed, when the
 * test file ends, whether it passed, failed or was interrupted.
 */

export type Env = Record<string, string | number | boolean>

const children = new Set<ChildProcess>()
const directories = new Set<string>()

function killEverything(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
}
// Last resort when the test process ends without its teardowns (a timeout, Ctrl-C).
process.once('exit', killEverything)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killEverything()
    process.exit(1)
  })
}

/** Runs `fn` over `items` with at most `limit` at a time; results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!, i)
    }
  })
  await Promise.all(lanes)
  return results
}

const canBind = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })

/**
 * A free port below the kernel's ephemeral range (32768+), so that no outgoing connection can take it
 * while a process that listens on it (Redis during an outage) is down.
 */
export async function sparePort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if (await canBind(port)) return port
  }
  throw new Error('no spare port found')
}

/** A child process with its output kept in memory (for readiness lines and the counts workers log). */
export class Proc {
  output = ''
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    children.add(child)
    const append = (chunk: Buffer) => {
      this.output += chunk.toString()
      // Bounded: a runaway log must not take the machine's memory.
      if (this.output.length > 64 * 1024 * 1024) this.output = this.output.slice(-32 * 1024 * 1024)
    }
    child.stdout?.on('data', append)
    child.stderr?.on('data', append)
    this.exited = once(child, 'exit').then(([code, signal]) => {
      children.delete(child)
      return { code: code as number | null, signal: signal as NodeJS.Signals | null }
    })
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', graceMs = 15_000): Promise<void> {
    if (!this.alive) return
    this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }

  /** Log lines (pino JSON) whose `msg` is `msg`, parsed. */
  logged<T = Record<string, unknown>>(msg: string): T[] {
    const needle = `"msg":${JSON.stringify(msg)}`
    return this.output
      .split('\n')
      .filter((line) => line.includes(needle))
      .map((line) => JSON.parse(line) as T)
  }

  tail(lines = 20): string {
    return this.output.split('\n').slice(-lines).join('\n')
  }
}

/** `node --import tsx <entry>` from the repository root. */
function spawnNode(name: string, entry: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  return new Proc(name, child)
}

/** A redis-server of the test's own, with AOF, that can be stopped and started again on the same port and data. */
export class RedisServer {
  proc: Proc | undefined

  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '']
    this.proc = new Proc('redis', spawn('redis-server', [...args, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] }))
    await waitFor(() => this.ping(), 20_000, `redis-server on ${this.port}`, 50)
  }

  /** SIGTERM: Redis writes its AOF and exits (a clean shutdown); SIGKILL: a crash. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.proc?.kill(signal)
  }

  async ping(): Promise<boolean> {
    const redis = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 })
    redis.on('error', () => {})
    try {
      await redis.connect()
      return (await redis.ping()) === 'PONG'
    } catch {
      return false
    } finally {
      redis.disconnect()
    }
  }
}

const HTTP_TIMEOUT_MS = 30_000

export interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json<T = Record<string, unknown>>(): T
}

/** A keep-alive HTTP client for one of the processes (127.0.0.1 only). */
export class Http {
  readonly pool: Pool

  constructor(
    readonly url: string,
    connections = 32,
  ) {
    this.pool = new Pool(url, { connections, headersTimeout: HTTP_TIMEOUT_MS, bodyTimeout: HTTP_TIMEOUT_MS })
  }

  async request(
    method: 'GET' | 'POST',
    path: string,
    options: { body?: string | Buffer; json?: unknown; headers?: Record<string, string> } = {},
  ): Promise<HttpAnswer> {
    const body = options.json !== undefined ? JSON.stringify(options.json) : options.body
    const headers = { ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers }
    const res = await this.pool.request({ method, path, headers, ...(body !== undefined ? { body } : {}) })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) }
  }

  get(path: string, headers: Record<string, string> = {}) {
    return this.request('GET', path, { headers })
  }

  post(path: string, json: unknown, headers: Record<string, string> = {}) {
    return this.request('POST', path, { json, headers })
  }

  close(): Promise<void> {
    return this.pool.destroy()
  }
}

export const BEARER = { authorization: `Bearer ${API_KEY}` }
export const DLR_PATH = `/infobip-dlr?token=${encodeURIComponent(DLR_TOKEN)}`

/** A Swiss mobile number whose last four digits pick the simulator's behaviour. */
export const phone = (last4: string): string => `+4179302${last4}`

/** Last four digits with the simulator's default behaviour (DELIVERED): 1000–9999. */
export const ordinary = (i: number): string => String(1000 + (i % 9000))

/** One service deployment under test: one KEY_PREFIX shared by an API, a simulator and workers. */
export class Stack {
  readonly keys: Keys
  readonly procs: Proc[] = []
  readonly http: Http[] = []
  readonly queues: Queue[] = []
  api: Http | undefined
  sim: Http | undefined
  readonly store: MessageStore

  constructor(
    readonly chaos: Chaos,
    readonly env: Record<string, string>,
    readonly apiPort: number,
    readonly simPort: number,
  ) {
    this.keys = makeKeys(env.KEY_PREFIX!)
    this.store = new MessageStore(chaos.redisClient, { prefix: env.KEY_PREFIX!, ttlDays: 1 })
  }

  get prefix(): string {
    return this.env.KEY_PREFIX!
  }

  /** The BullMQ prefix of the queues' one partition (the chaos stack runs with QUEUE_PARTITIONS=1). */
  get queuePrefix(): string {
    return partitionPrefix({ KEY_PREFIX: this.prefix }, 0)
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.apiPort}`
  }

  get simUrl(): string {
    return `http://127.0.0.1:${this.simPort}`
  }

  #spawn(name: string, entry: string, extra: Env): Proc {
    const env = { ...this.env, ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, String(v)])) }
    const proc = spawnNode(name, entry, env)
    this.procs.push(proc)
    return proc
  }

  async #ready(proc: Proc, check: () => Promise<boolean>, what: string): Promise<void> {
    await waitFor(
      async () => {
        if (!proc.alive) throw new Error(`${what} exited during start-up:\n${proc.tail()}`)
        return check().catch(() => false)
      },
      60_000,
      what,
      100,
    )
  }

  /** The Infobip simulator (`npm run simulator`). */
  async simulator(extra: Env = {}): Promise<Http> {
    const proc = this.#spawn('simulator', 'src/simulator/server.ts', { SIM_PORT: this.simPort, ...extra })
    const http = this.#http(this.simUrl)
    await this.#ready(proc, async () => (await http.get('/_sim/stats')).status === 200, 'simulator')
    this.sim = http
    return http
  }

  /**
   * `count` messages with ordinary numbers (their default outcome), stored through the API's
   * `POST /messages/batch`, 1,000 per request, each answer checked: their ids, in order.
   */
  async createMessages(t: Test, count: number, text: string): Promise<string[]> {
    const ids: string[] = []
    for (let b = 0; b < count / 1000; b++) {
      const res = await this.api!.post(
        '/messages/batch',
        { messages: Array.from({ length: 1000 }, (_, i) => ({ to: phone(ordinary(b * 1000 + i)), text })) },
        BEARER,
      )
      t.equal(res.status, 202)
      ids.push(...res.json<{ messages: { id: string }[] }>().messages.map((m) => m.id))
    }
    return ids
  }

  /** The API (`npm start`), its delivery-report URL pointing at itself. */
  async startApi(extra: Env = {}): Promise<Proc> {
    const proc = this.#spawn('api', 'src/server.ts', { PORT: this.apiPort, ...extra })
    const http = this.api ?? this.#http(this.apiUrl, 64)
    await this.#ready(proc, async () => (await http.get('/health')).status === 200, 'API')
    this.api = http
    return proc
  }

  /** A worker process running `queues` (e.g. "send", "dlr", "send,dlr"). */
  async worker(queues: string, extra: Env = {}): Promise<Proc> {
    const proc = this.#spawn(`worker(${queues})`, 'workers/index.ts', { WORKER_QUEUES: queues, LOG_LEVEL: 'info', ...extra })
    await this.#ready(proc, async () => proc.output.includes('"msg":"workers started"'), `worker ${queues}`)
    return proc
  }

  queue(name: QueueName): Queue {
    const queue = new Queue(name, { connection: this.chaos.redisClient, prefix: this.queuePrefix })
    this.queues.push(queue)
    return queue
  }

  #http(url: string, connections = 32): Http {
    const http = new Http(url, connections)
    this.http.push(http)
    return http
  }

  /** Messages per status, from the status indexes (cheap enough to poll). */
  async statusCounts(): Promise<Record<Status, number>> {
    const statuses = Object.values(STATUS)
    const pipeline = this.chaos.redisClient.pipeline()
    for (const s of statuses) pipeline.zcard(this.keys.byStatus(DEFAULT_TENANT, s, 0))
    const replies = (await pipeline.exec())!
    return Object.fromEntries(statuses.map((s, i) => [s, Number(replies[i]![1])])) as Record<Status, number>
  }

  /** Jobs not yet done in a queue. */
  async pending(queue: Queue): Promise<number> {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children')
    return Object.values(counts).reduce((a, b) => a + b, 0)
  }

  /** What the simulator knows of each message: submissions (requests that carried it) and acceptances. */
  async simMessages(ids: readonly string[]): Promise<({ submissions: number; accepted: number } | undefined)[]> {
    return mapLimit(ids, 32, async (id) => {
      const res = await this.sim!.get(`/_sim/messages/${id}`)
      return res.status === 200 ? res.json<{ submissions: number; accepted: number }>() : undefined
    })
  }

  async close(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill('SIGKILL')))
    await Promise.all(this.queues.map((q) => q.close().catch(() => {})))
    await Promise.all(this.http.map((h) => h.close().catch(() => {})))
  }
}

/** One test file's bench: its Redis, its temporary directory, its stacks. */
export class Chaos {
  readonly #stacks: Stack[] = []
  readonly #clients: Redis[] = []
  /** For the test's own inspection: waits through a Redis restart like a worker does. */
  readonly redisClient: Redis

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly redis: RedisServer,
  ) {
    this.redisClient = this.client()
  }

  static async start(t: Test, name: string): Promise<Chaos> {
    const dir = mkdtempSync(join(tmpdir(), `sms-chaos-${name}-`))
    directories.add(dir)
    const redis = new RedisServer(await sparePort(), dir)
    const chaos = new Chaos(name, dir, redis)
    t.teardown(() => chaos.close())
    await redis.start()
    return chaos
  }

  client(): Redis {
    const redis = new Redis(this.redis.url, { maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(n * 100, 1000) })
    redis.on('error', () => {})
    this.#clients.push(redis)
    return redis
  }

  /**
   * A deployment on this Redis with its own KEY_PREFIX. `env` applies to every process of it (the
   * API's SEND_MAX_ATTEMPTS, for instance, decides the attempts of the jobs it creates).
   */
  async stack(env: Env = {}): Promise<Stack> {
    const apiPort = await sparePort()
    const simPort = await sparePort()
    const base = testEnv(this.name, {
      REDIS_URL: this.redis.url,
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: `http://127.0.0.1:${apiPort}`,
      INFOBIP_BASE_URL: `http://127.0.0.1:${simPort}`,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: 1_000_000,
      ...env,
    })
    const stack = new Stack(this, base, apiPort, simPort)
    this.#stacks.push(stack)
    return stack
  }

  async close(): Promise<void> {
    await Promise.all(this.#stacks.map((s) => s.close()))
    for (const client of this.#clients) client.disconnect()
    await this.redis.stop('SIGKILL')
    rmSync(this.dir, { recursive: true, force: true })
    directories.delete(this.dir)
  }
}

/** Counts of each distinct value. */
export function histogram<T extends string | number>(values: T[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const v of values) counts[String(v)] = (counts[String(v)] ?? 0) + 1
  return counts
}
