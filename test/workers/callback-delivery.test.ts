import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { UnrecoverableError, type Job } from 'bullmq'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { newMessageId } from '../../src/accept-messages.js'
import type { CallbackJob } from '../../src/callbacks.js'
import { createQueues, QUEUE } from '../../src/queues.js'
import { connectOrExplain, createRedis } from '../../src/redis.js'
import { MessageStore } from '../../src/store/message-store.js'
import { makeCallbackProcessor, type CallbackDeps } from '../../workers/callback.js'
import { CALLBACK_SECRET, cleanup, testConfig, waitFor } from '../helpers/index.js'

/**
 * The callback worker's requests against real receivers on 127.0.0.1 (docs/statuses.md#retries,
 * docs/api.md#send-one-message): how long a delivery may take, how much of the answer it reads, and
 * which URLs it refuses to connect to.
 */
const config = testConfig('callback-delivery')
const redis = createRedis(config, 'worker')
await connectOrExplain(redis, config)
const store = new MessageStore(redis, { prefix: config.KEY_PREFIX, ttlDays: 1, partitions: config.QUEUE_PARTITIONS })
const queue = createQueues<CallbackJob>(QUEUE.callback, redis, config)
t.teardown(async () => {
  await queue.close()
  redis.disconnect()
  await cleanup(config.KEY_PREFIX)
})

function processor(t: Test, deps: Partial<CallbackDeps> = {}) {
  const process = makeCallbackProcessor({ store, queue, log: pino({ level: 'silent' }), secret: () => CALLBACK_SECRET, allowPrivate: true, ...deps })
  t.teardown(() => process.close())
  return process
}

/** A callback job for a message's first callback event (seq 2: no earlier callback to wait for). */
function job(url: string): Job<CallbackJob> {
  const messageId = newMessageId()
  const payload = { eventId: `${messageId}-2`, messageId, seq: 2 }
  return { id: payload.eventId, attemptsMade: 0, data: { url, payload } } as unknown as Job<CallbackJob>
}

/** A receiver over real HTTP that answers with `respond` once it has read the request. */
async function receiver(t: Test, respond: (res: ServerResponse) => void = (res) => res.writeHead(204).end(), port = 0) {
  const received: IncomingMessage[] = []
  const server = createServer((req, res) => {
    received.push(req)
    req.resume()
    req.on('end', () => respond(res))
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/sms-status`, received }
}

/** Writes `chunk` every `everyMs` until the worker hangs up (or `maxBytes` are sent); counts what was sent. */
function drip(res: ServerResponse, chunk: string, everyMs: number, maxBytes = Infinity) {
  const sent = { bytes: 0, closed: false }
  const timer = setInterval(() => {
    if (sent.bytes >= maxBytes) return void res.end()
    res.write(chunk)
    sent.bytes += chunk.length
  }, everyMs)
  res.on('close', () => {
    clearInterval(timer)
    sent.closed = true
  })
  return sent
}

t.test('a receiver that trickles its answer fails the delivery at the deadline', async (t) => {
  const hook = await receiver(t, (res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.flushHeaders()
    drip(res, 'x', 50)
  })
  const deliver = processor(t, { timeoutMs: 300 })
  const started = Date.now()
  await t.rejects(deliver(job(hook.url)), { message: 'callback receiver gave no complete answer within 300 ms' })
  const elapsed = Date.now() - started
  t.ok(elapsed >= 290 && elapsed < 1000, `one deadline for the whole delivery (${elapsed} ms)`)
  t.equal(hook.received.length, 1)
})

t.test('a 200 with a 10 MB body is delivered after reading only a few KB of it', async (t) => {
  // The body is sent 1 KiB at a time, as the worker reads it, so what the receiver has sent when the
  // worker hangs up is what the worker read, not what socket buffers could hold.
  let sent: ReturnType<typeof drip> | undefined
  const hook = await receiver(t, (res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    sent = drip(res, 'x'.repeat(1024), 5, 10 * 1024 * 1024)
  })
  t.equal(await processor(t)(job(hook.url)), 'delivered')
  await waitFor(() => sent?.closed, 5000, 'the worker to hang up')
  t.ok(sent!.bytes <= 16 * 1024, `${sent!.bytes} bytes of the answer were sent before the worker hung up`)
})

t.test('a small answer is read to its end and the delivery succeeds', async (t) => {
  const hook = await receiver(t, (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'))
  t.equal(await processor(t, { timeoutMs: 300 })(job(hook.url)), 'delivered')
})

t.test('an IP-literal host on a private address is refused before connecting', async (t) => {
  const hook = await receiver(t)
  const deliver = processor(t, { allowPrivate: false })
  const port = new URL(hook.url).port
  for (const url of [hook.url, `http://[::ffff:127.0.0.1]:${port}/sms-status`]) {
    const error = await deliver(job(url)).catch((error: unknown) => error)
    t.type(error, UnrecoverableError, `${url}: retrying would not make it allowed`)
    t.match((error as Error).message, /^callback URL is refused: host .* is not a public address$/)
  }
  t.equal(hook.received.length, 0, 'the receiver saw no request')
})

/** A port below 1024 that nothing on this machine uses (binding one needs root, as CI has), if any. */
async function freeSystemPort(): Promise<number | undefined> {
  for (let port = 1023; port > 900; port--) {
    const probe = createServer().listen(port, '127.0.0.1')
    const bound = await once(probe, 'listening').then(
      () => true,
      () => false,
    )
    if (bound) {
      probe.close()
      await once(probe, 'close')
      return port
    }
  }
  return undefined
}
const SYSTEM_PORT = await freeSystemPort()

t.test(
  'a system port is refused before connecting, even with CALLBACK_ALLOW_PRIVATE',
  { skip: SYSTEM_PORT === undefined && 'no port below 1024 can be bound here' },
  async (t) => {
    const hook = await receiver(t, undefined, SYSTEM_PORT)
    const error = await processor(t, { allowPrivate: true })(job(hook.url)).catch((error: unknown) => error)
    t.type(error, UnrecoverableError)
    t.equal((error as Error).message, `callback URL is refused: port ${SYSTEM_PORT} is not allowed (use 80, 443 or 1024–65535)`)
    t.equal(hook.received.length, 0, 'the receiver saw no request')
  },
)
