import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { request, type IncomingMessage } from 'node:http'
import { connect, createServer } from 'node:net'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { partitionPrefix, QUEUE } from '../src/queues.js'
import { MessageStore } from '../src/store/message-store.js'
import {
  API_KEY,
  AUTH,
  buildTestApp,
  cleanup,
  REDIS_URL,
  ROOT,
  spawnWorker,
  startSimulator,
  testConfig,
  testEnv,
  waitFor,
  workerReady,
} from './helpers/index.js'
import { TEST_CLUSTER } from './helpers/index.js'
if (TEST_CLUSTER) {
  t.plan(0, 'its processes and checks use the single Redis of REDIS_URL')
} else {
  /** Graceful shutdown (docs/operations.md#processes), with SIGTERM sent to real processes. */

  type Spawned = ChildProcess & { output: string }

  async function freePort(): Promise<number> {
    const server = createServer().listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    server.close()
    await once(server, 'close')
    return port
  }

  /** `npm start` as a child process, killed when the test ends. */
  function spawnApi(t: Test, env: Record<string, string>): Spawned {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }) as Spawned
    child.output = ''
    child.stdout!.on('data', (d) => (child.output += d))
    child.stderr!.on('data', (d) => (child.output += d))
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    })
    return child
  }

  /** Resolves with the exit code, or rejects if the process is still running after `timeoutMs`. */
  async function exitOf(child: ChildProcess, timeoutMs: number): Promise<number | null> {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
    const timeout = AbortSignal.timeout(timeoutMs)
    const [code] = (await once(child, 'exit', { signal: timeout })) as [number | null]
    return code
  }

  /** Whether a new TCP connection to the port is refused (true) or accepted (false). */
  const refused = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(false)
      })
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
    })

  const readBody = async (res: IncomingMessage) => {
    let body = ''
    for await (const chunk of res) body += chunk
    return body
  }

  t.test('API: SIGTERM stops accepting, finishes the in-flight request, exits 0', async (t) => {
    const port = await freePort()
    const env = testEnv('shutdown-api', { PORT: port, HOST: '127.0.0.1', LOG_LEVEL: 'debug' })
    t.teardown(() => cleanup(env.KEY_PREFIX!))
    const api = spawnApi(t, env)
    await waitFor(() => api.output.includes('Server listening'), 20_000, 'the API to listen')

    // A POST whose body is still arriving when the signal comes: in flight from the server's view.
    const payload = JSON.stringify({ to: '+41 79 302 67 27', text: 'sent across a shutdown' })
    const req = request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/messages',
      agent: false,
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    })
    const answered = once(req, 'response') as Promise<[IncomingMessage]>
    req.write(payload.slice(0, 10))
    await waitFor(() => api.output.includes('"url":"/messages"'), 10_000, 'the server to see the request')

    const signalled = Date.now()
    api.kill('SIGTERM')
    await waitFor(() => api.output.includes('closing: finishing in-flight requests'), 10_000, 'the API to start closing')
    await waitFor(() => refused(port), 10_000, 'new connections to be refused')
    t.equal(api.exitCode, null, 'still running while a request is in flight')

    req.end(payload.slice(10))
    const [res] = await answered
    const body = await readBody(res)
    t.equal(res.statusCode, 202, 'the in-flight request is answered')
    const { id } = JSON.parse(body) as { id: string }

    t.equal(await exitOf(api, 10_000), 0, 'exits 0')
    t.ok(Date.now() - signalled < 10_000, 'within the grace period')
    t.notMatch(api.output, /"level":50|killed by timeout/, 'no error on the way out')

    // The in-flight request really was stored: Redis was closed only after it finished.
    const redis = new Redis(REDIS_URL)
    t.teardown(() => redis.disconnect())
    t.match(await new MessageStore(redis, { prefix: env.KEY_PREFIX!, ttlDays: 30 }).get(id), { id, status: 'QUEUED' })
  })

  t.test('worker: SIGTERM during an Infobip call lets the job finish, then exits 0', async (t) => {
    const sim = await startSimulator(t, testConfig('shutdown-sim', { SIM_LATENCY_MS: 1500 }))
    const env = testEnv('shutdown-worker', {
      INFOBIP_BASE_URL: sim.url,
      PUBLIC_BASE_URL: 'http://127.0.0.1:9',
      WORKER_QUEUES: 'send',
      LOG_LEVEL: 'info',
    })
    const config = loadConfig(env)
    const app = await buildTestApp(t, config)
    const worker = spawnWorker(t, env) as Spawned
    await workerReady(worker)

    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41 79 302 67 27', text: 'hello' } })
    t.equal(res.statusCode, 202)
    const { id } = res.json<{ id: string }>()
    // The simulator records a submission before its latency: from here the job is active and its
    // request to Infobip is waiting for an answer.
    await waitFor(async () => (await fetch(`${sim.url}/_sim/messages/${id}`)).ok, 10_000, 'the submission to reach the simulator')
    t.equal((await app.store.get(id))?.status, 'QUEUED', 'the answer has not come yet')

    const signalled = Date.now()
    worker.kill('SIGTERM')
    t.equal(await exitOf(worker, 30_000), 0, 'exits 0')
    const took = Date.now() - signalled
    t.ok(took < 30_000, `within the grace period (${took} ms)`)
    t.match(worker.output, /closing workers: finishing active jobs/)

    t.match(await app.store.get(id), { status: 'PENDING', attempts: 1 }, 'the active job finished before the exit')
    t.match(await (await fetch(`${sim.url}/_sim/messages/${id}`)).json(), { submissions: 1, accepted: 1 })
    // Completed, not left active or waiting for another worker to send again.
    const queue = new Queue(QUEUE.send, { connection: app.redis, prefix: partitionPrefix(config, 0) })
    t.teardown(() => queue.close())
    t.match(await queue.getJobCounts('active', 'waiting', 'delayed', 'failed'), { active: 0, waiting: 0, delayed: 0, failed: 0 })
  })
}
