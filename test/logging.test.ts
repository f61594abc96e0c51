import { Writable } from 'node:stream'
import { pino } from 'pino'
import { createRedis } from '../src/redis.js'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { loggerOptions } from '../src/logger.js'
import { makeKeys } from '../src/store/keys.js'
import { startWorkers } from '../workers/start.js'
import { API_KEY, AUTH, cleanup, DLR_TOKEN, INFOBIP_KEY, startSimulator, testConfig, waitFor, TEST_REDIS } from './helpers/index.js'

/** Collects every log line a process would print. */
function capture() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  return { lines, stream }
}

t.test('a full send → report cycle logs no secret, no text and no full phone number', async (t) => {
  const sim = await startSimulator(t, testConfig('log-sim'))
  const logs = capture()
  const base = testConfig('logging', { INFOBIP_BASE_URL: sim.url, LOG_LEVEL: 'trace' })
  const app = await buildApp(base, { logger: { ...loggerOptions('trace'), stream: logs.stream } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const config = { ...base, PUBLIC_BASE_URL: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
  const workers = await startWorkers(config, pino(loggerOptions('trace'), logs.stream))
  t.teardown(async () => {
    await workers.close()
    await app.close()
    await cleanup(config.KEY_PREFIX)
  })

  const text = 'Secret code 987654 for Alice'
  const numbers = ['+41 79 302 61 23', '+41 79 302 00 06', '+41 79 302 00 07']
  const ids: string[] = []
  for (const to of numbers) {
    const res = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': `log-${to}` },
      payload: { to, text },
    })
    ids.push(res.json().id)
  }
  // A request with bad credentials and a bad body are logged too.
  await app.inject({ method: 'POST', url: '/messages', headers: { authorization: 'Bearer not-a-key-but-secret' }, payload: { to: '+41793026123', text } })
  await app.inject({ method: 'POST', url: `/infobip-dlr?token=${DLR_TOKEN}`, payload: 'not json', headers: { 'content-type': 'application/json' } })
  await app.inject({
    method: 'POST',
    url: '/infobip-dlr',
    headers: { 'x-webhook-token': DLR_TOKEN },
    payload: { results: [{ messageId: 'msg_unknown', to: '41793026123', status: { groupId: 3, id: 5 } }] },
  })

  await waitFor(
    async () => {
      const messages = await app.store.getMany(ids)
      return messages.every((m) => m?.final) || undefined
    },
    15_000,
    'all final',
  )
  await new Promise((resolve) => setImmediate(resolve))

  const all = logs.lines.join('\n')
  t.ok(logs.lines.length > 20, `${logs.lines.length} log lines captured`)
  t.match(all, /infobip-dlr\?token=\[redacted\]/, 'report requests are logged, with the token redacted')
  for (const secret of [API_KEY, DLR_TOKEN, INFOBIP_KEY, 'not-a-key-but-secret', text, '987654']) {
    t.notOk(all.includes(secret), `no "${secret.slice(0, 12)}…" in the logs`)
  }
  for (const digits of ['41793026123', '41793020006', '41793020007', '793026123']) {
    t.notOk(all.includes(digits), `no full number ${digits.slice(-4)} in the logs`)
  }
})

t.test("a Redis error logs the command's name, never its arguments", async (t) => {
  const { KEY_PREFIX } = testConfig('log-redis-error')
  const redis = createRedis(TEST_REDIS, 'worker', { lazyConnect: false })
  t.teardown(async () => {
    redis.disconnect()
    await cleanup(KEY_PREFIX)
  })
  const key = `${KEY_PREFIX}:a-string`
  await redis.set(key, 'x')
  const phone = '41793026123'
  const text = 'Secret code 987654 for Alice'
  // A real ReplyError, which ioredis gives `command: { name, args }`.
  const error = (await redis.hset(key, 'to', phone, 'text', text).catch((e: unknown) => e)) as Error & { command?: { args?: unknown } }
  t.match(error, { message: /^WRONGTYPE/, command: { name: 'hset', args: [key, 'to', phone, 'text', text] } }, 'the error carries the arguments')

  const logs = capture()
  const log = pino(loggerOptions('info'), logs.stream)
  log.error({ err: error }, 'as err')
  log.warn({ error }, 'as error')
  log.error(error)
  log.error({ err: new Error('could not store', { cause: error }) }, 'as a cause')
  log.error({ err: new AggregateError([error, new Error('other')], 'several failed') }, 'inside an AggregateError')
  log.error({ err: Object.assign(new Error('batch failed'), { errors: [error], previous: { error } }) }, 'inside arrays and objects')
  log.error({ err: Object.assign(new Error('child failed'), { args: [phone], argv: ['node', text] }) }, 'its own args')
  log.error({ err: { command: { name: 'hset', args: [phone, text] } } }, 'not an Error')
  log.warn({ error: 'a plain message' }, 'a string stays as it is')

  t.equal(logs.lines.length, 9)
  for (const line of logs.lines) {
    const entry = JSON.parse(line)
    const context = String(entry.msg)
    t.notOk(line.includes(phone), `${context}: no phone number`)
    t.notOk(line.includes('987654'), `${context}: no text`)
    if (entry.msg === 'a string stays as it is') t.equal(entry.error, 'a plain message', context)
    else if (entry.msg === 'not an Error') t.same(entry.err, { command: { name: 'hset', args: '[redacted]' } }, context)
    else if (entry.msg !== 'its own args')
      t.match(line, /WRONGTYPE Operation against a key holding the wrong kind of value/, `${context}: the message is there`)
  }
  const [asErr, asError, bare] = logs.lines.map((l) => JSON.parse(l))
  for (const logged of [asErr.err, asError.error, bare.err]) {
    t.match(logged, { type: String, message: /^WRONGTYPE/, stack: /^\w*Error: WRONGTYPE/, command: { name: 'hset', args: '[redacted]' } })
  }
  t.match(JSON.parse(logs.lines[4]!).err.aggregateErrors, [{ command: { name: 'hset' } }, { message: 'other' }])
  t.match(JSON.parse(logs.lines[5]!).err, { errors: [{ command: { name: 'hset' } }], previous: { error: { command: { name: 'hset' } } } })
})

t.test('a Redis error in a request: the API logs the command, not the message it was storing', async (t) => {
  const logs = capture()
  const config = testConfig('log-api-redis-error')
  const app = await buildApp(config, { logger: { ...loggerOptions('info'), stream: logs.stream } })
  const redis = createRedis(TEST_REDIS, 'worker', { lazyConnect: false })
  t.teardown(async () => {
    await app.close()
    redis.disconnect()
    await cleanup(config.KEY_PREFIX)
  })
  // The outboxes of the wrong type: the script storing the message fails with WRONGTYPE.
  for (let shard = 0; shard < config.QUEUE_PARTITIONS; shard++) await redis.set(makeKeys(config.KEY_PREFIX).outbox(shard), 'not a sorted set')
  const text = 'Your code is 246810, Bob'
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41 79 302 55 44', text } })
  t.equal(res.statusCode, 500)

  const failed = logs.lines.map((l) => JSON.parse(l)).find((entry) => entry.msg === 'request failed')
  t.match(failed, { reqId: String, err: { message: /WRONGTYPE/, command: { name: String } } }, 'the failure is logged with its command')
  const all = logs.lines.join('\n')
  for (const secret of [text, '246810', '41793025544', '793025544']) t.notOk(all.includes(secret), `no "${secret}" in the logs`)
})
