import { DEFAULT_TENANT } from '../../src/tenants.js'
import fc from 'fast-check'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import type { Message } from '../../src/domain/message.js'
import { STATUSES, v2Report, v3Report } from '../helpers/reports.js'
import { BEARER, Chaos, type HttpAnswer } from './harness.js'
import { DLR_TOKEN, waitFor } from '../helpers/index.js'

/**
 * Chaos 5: property-based bodies (fast-check) against `/messages`, `/messages/batch` and
 * `/infobip-dlr` of a running API process. Every answer is below 500; an answer of 4xx wrote nothing
 * to Redis (every key written while the request ran is seen through keyspace notifications); a 2xx
 * left complete records behind (a message with its QUEUED event and its send job; a report batch as
 * one dlr job holding exactly what was sent); the process never dies. No workers run, so nothing
 * else writes. Callback URLs are never resolved (CALLBACK_ALLOW_PRIVATE): no traffic leaves 127.0.0.1.
 */

const chaos = await Chaos.start(t, 'fuzz')
// Wrong tokens are part of the fuzzing: the failed-authentication throttle would soon answer them all with 429.
const stack = await chaos.stack({ CALLBACK_ALLOW_PRIVATE: true, AUTH_FAILURES_PER_MINUTE: 100_000 })
const apiProc = await stack.startApi()
const api = stack.api!
const sendQueue = stack.queue('send')
const dlrQueue = stack.queue('dlr')
const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000)
t.comment(`seed ${seed} (CHAOS_SEED=${seed} replays the runs)`)

// ------------------------------------------------------------------------------------------------
// Writes to Redis, request by request

/** Keys every request may touch whatever its answer: the rate-limit counter, the shared metrics. */
const ignored = (key: string) => key.startsWith(`${stack.prefix}:ratelimit:`) || key.startsWith(`${stack.prefix}:metrics`) || key.includes(':fuzz:mark:')

const admin = chaos.client()
await admin.config('SET', 'notify-keyspace-events', 'EA')
const subscriber: Redis = chaos.client()
let written = new Set<string>()
let marks = 0
let seenMark = -1
subscriber.on('pmessage', (_pattern: string, _channel: string, key: string) => {
  const mark = /:fuzz:mark:(\d+)$/.exec(key)
  if (mark) seenMark = Math.max(seenMark, Number(mark[1]))
  else if (!ignored(key)) written.add(key)
})
await subscriber.psubscribe('__keyevent@0__:*')

/**
 * Runs `request` and returns its answer with every key written meanwhile. A marker key written after
 * the answer arrives: once its notification is in, so are those of every earlier write.
 */
async function observe(request: () => Promise<HttpAnswer>): Promise<{ res: HttpAnswer; writes: string[] }> {
  written = new Set()
  const res = await request()
  const mark = marks++
  await admin.set(`${stack.prefix}:fuzz:mark:${mark}`, '1', 'EX', 60)
  await waitFor(() => seenMark >= mark, 5000, 'the keyspace notification of the marker', 2)
  return { res, writes: [...written] }
}

const stats = { messages: {} as Record<string, number>, batch: {} as Record<string, number>, dlr: {} as Record<string, number> }
const count = (table: Record<string, number>, status: number) => (table[status] = (table[status] ?? 0) + 1)

// ------------------------------------------------------------------------------------------------
// Arbitraries

const anyJson = fc.jsonValue({ maxDepth: 2 })
/** A field that is mostly plausible and sometimes anything at all. */
const field = <T>(plausible: fc.Arbitrary<T>) => fc.oneof({ weight: 5, arbitrary: plausible }, { weight: 1, arbitrary: anyJson })

const phones = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom('+41 79 302 67 27', '+41793026727', '0041793026727', '+1 202 555 0143', '+44 7911 123456', '+41793020006', '(+41) 79-302.00.01'),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^\+?[0-9 ()./-]{0,40}$/) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
)
const texts = fc.oneof(
  { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 300 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 100 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '\u0000',
      '\ud800',
      'a'.repeat(3825),
      'a'.repeat(3826),
      'ж'.repeat(1675),
      'ж'.repeat(1676),
      '€'.repeat(1913),
      '😀'.repeat(900),
      'x'.repeat(4001),
    ),
  },
)
const message = fc.record(
  {
    to: field(phones),
    text: field(texts),
    from: field(fc.oneof(fc.stringMatching(/^[A-Za-z0-9 ]{0,12}$/), fc.stringMatching(/^\+?[0-9]{0,16}$/))),
    reference: field(fc.string({ maxLength: 110 })),
    callbackUrl: field(
      fc.oneof(
        fc.webUrl(),
        fc.constantFrom('http://127.0.0.1:9/cb', 'https://[::1]/x', 'ftp://example.com/', 'javascript:alert(1)', 'http://'),
        fc.string({ maxLength: 50 }),
      ),
    ),
    sendAt: field(
      fc.oneof(
        fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
        fc.string({ maxLength: 30 }),
      ),
    ),
    validityPeriodMinutes: field(fc.integer({ min: -10, max: 3000 })),
  },
  { requiredKeys: [] },
)
/** Plausible messages, sometimes with an extra property. */
const messages = fc
  .tuple(message, fc.option(fc.dictionary(fc.string({ maxLength: 12 }), anyJson, { maxKeys: 2 }), { freq: 5 }))
  .map(([m, extra]) => ({ ...m, ...extra }))
/** Messages that are valid, so that 2xx answers are common enough to be checked too. */
const validMessage = fc.record(
  {
    to: fc.constantFrom('+41 79 302 67 27', '+41793026727', '+1 202 555 0143', '+44 7911 123456'),
    text: fc.string({ minLength: 1, maxLength: 200 }),
    reference: fc.string({ minLength: 1, maxLength: 100 }),
    validityPeriodMinutes: fc.integer({ min: 1, max: 2880 }),
  },
  { requiredKeys: ['to', 'text'] },
)

const POISON = [
  '{"to":"+41793026727","text":"hi","__proto__":{"polluted":true}}',
  '{"to":"+41793026727","text":"hi","constructor":{"prototype":{"polluted":true}}}',
  '{"to":"+41793026727","text":"hi"}garbage',
  '{"to":',
  `{"messages":[${'{"to":"+41793026727","text":"x"},'.repeat(1000)}{"to":"+41793026727","text":"x"}]}`,
  '['.repeat(2000) + ']'.repeat(2000),
  'null',
  '"a string"',
  '1e999',
  '',
]
/** A raw body: JSON of a plausible shape, any JSON, text that is not JSON, bytes that are not UTF-8. */
const rawBody = (shape: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 8, arbitrary: shape.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: anyJson.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
    { weight: 1, arbitrary: fc.constantFrom(...POISON) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }).map((bytes) => Buffer.from(bytes)) },
  )
const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/json; charset=utf-16',
      'multipart/form-data; boundary=x',
    ),
  },
  { weight: 1, arbitrary: fc.constant(undefined) },
)
const idempotencyKey = fc.option(fc.oneof(fc.constantFrom('key-1', 'key-2', 'key-3'), fc.stringMatching(/^[\x21-\x7e]{1,300}$/)), { freq: 3 })

// ------------------------------------------------------------------------------------------------
// Checks

function headersOf(type: string | undefined, extra: Record<string, string | null> = {}): Record<string, string> {
  const headers: Record<string, string> = { ...BEARER }
  if (type) headers['content-type'] = type
  for (const [k, v] of Object.entries(extra)) if (v !== null) headers[k] = v
  return headers
}

/** The answer of a 2xx on /messages*: complete records and a send job for each. */
async function complete(resources: Message[]): Promise<string | undefined> {
  const stored = await stack.store.getMany(resources.map((m) => m.id))
  for (const [i, m] of stored.entries()) {
    if (!m) return `${resources[i]!.id} answered but not stored`
    if (m.text !== resources[i]!.text || m.to !== resources[i]!.to || m.events.length < 1 || m.events[0]!.status !== 'QUEUED')
      return `${m.id} stored incompletely`
  }
  // Jobs are named after the first message of each group created together (same sendAt, ≤ 100).
  const jobs = await Promise.all(resources.map((m) => sendQueue.getJob(m.id)))
  const ids = new Set(jobs.flatMap((j) => (j?.data as { ids: string[] } | undefined)?.ids ?? []))
  const missing = resources.filter((m) => !ids.has(m.id))
  return missing.length > 0 ? `${missing.length} message(s) without a send job` : undefined
}

async function checkMessages(t: Test, path: string, res: HttpAnswer, writes: string[], table: Record<string, number>): Promise<boolean> {
  count(table, res.status)
  if (res.status >= 500) return fail(t, `${path} answered ${res.status}: ${res.text}`)
  if (res.status >= 400) return writes.length === 0 || fail(t, `${path} answered ${res.status} but wrote ${writes.slice(0, 5).join(', ')}`)
  // A replay (200) writes nothing; a 202 must have been seen writing, or the detector is blind.
  if (res.status === 202 && writes.length === 0) return fail(t, `${path} answered 202 but no write was seen`)
  const body = res.json<Message | { messages: Message[] }>()
  const resources = 'messages' in body ? body.messages : [body]
  const problem = await complete(resources)
  return problem === undefined || fail(t, `${path} answered ${res.status}: ${problem}`)
}

function fail(t: Test, message: string): false {
  t.comment(message)
  return false
}

const RUNS = Number(process.env.CHAOS_FUZZ_RUNS ?? 1000)
const TIME_LIMIT_MS = 60_000

t.test('POST /messages: never a 5xx; a 4xx stores nothing; a 2xx stores a complete message and its job', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(rawBody(fc.oneof(messages, validMessage)), rawBody(validMessage)), contentType, idempotencyKey, async (body, type, key) => {
      const { res, writes } = await observe(() => api.request('POST', '/messages', { body, headers: headersOf(type, { 'idempotency-key': key }) }))
      return checkMessages(t, '/messages', res, writes, stats.messages)
    }),
    { seed, numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  )
  t.ok(
    Object.keys(stats.messages).some((s) => s.startsWith('2')),
    `2xx answers were checked too: ${JSON.stringify(stats.messages)}`,
  )
})

t.test('POST /messages/batch: never a 5xx; all or nothing', async (t) => {
  const batches = fc.oneof(
    { weight: 3, arbitrary: fc.record({ messages: fc.array(validMessage, { minLength: 1, maxLength: 5 }) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        messages: fc.array(fc.oneof({ weight: 6, arbitrary: validMessage }, { weight: 1, arbitrary: messages }), { minLength: 1, maxLength: 8 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ messages: fc.oneof(fc.constant([]), anyJson) }) },
    { weight: 1, arbitrary: fc.record({ messages: fc.array(validMessage, { minLength: 1, maxLength: 2 }), extra: anyJson }) },
  )
  await fc.assert(
    fc.asyncProperty(rawBody(batches), contentType, idempotencyKey, async (body, type, key) => {
      const { res, writes } = await observe(() => api.request('POST', '/messages/batch', { body, headers: headersOf(type, { 'idempotency-key': key }) }))
      return checkMessages(t, '/messages/batch', res, writes, stats.batch)
    }),
    { seed, numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  )
  t.ok(
    Object.keys(stats.batch).some((s) => s.startsWith('2')),
    `2xx answers were checked too: ${JSON.stringify(stats.batch)}`,
  )
})

t.test('POST /infobip-dlr: never a 5xx; a 4xx stores nothing; a 200 stores one dlr job with exactly the results sent', async (t) => {
  const known = (await stack.store.search({ tenant: DEFAULT_TENANT, limit: 5 })).messages.map((m) => m.id)
  const statusObject = fc.oneof(
    fc.constantFrom(...Object.values(STATUSES)),
    fc.record(
      {
        groupId: fc.oneof(fc.integer({ min: -1, max: 10 }), fc.constant(null), fc.string()),
        id: fc.oneof(fc.integer(), fc.constant(null)),
        name: fc.option(fc.string()),
      },
      { requiredKeys: [] },
    ),
  )
  const report = fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(...known, 'msg_unknown'), fc.constantFrom(...Object.values(STATUSES)), fc.boolean())
        .map(([id, s, v2]) => (v2 ? v2Report(id, s) : v3Report(id, s))),
    },
    {
      weight: 3,
      arbitrary: fc.record(
        {
          messageId: field(fc.constantFrom(...known, '')),
          status: field(statusObject),
          error: field(fc.record({ id: fc.option(fc.integer()) })),
          doneAt: field(fc.string()),
        },
        { requiredKeys: [] },
      ),
    },
    { weight: 1, arbitrary: anyJson },
  )
  const envelopes = fc.oneof(
    { weight: 6, arbitrary: fc.record({ results: fc.array(report, { maxLength: 20 }) }) },
    { weight: 1, arbitrary: fc.record({ results: anyJson }) },
    { weight: 1, arbitrary: fc.record({ results: fc.array(report, { maxLength: 3 }), extra: anyJson }) },
  )
  const tokens = fc.oneof(
    { weight: 8, arbitrary: fc.constant({ path: `/infobip-dlr?token=${DLR_TOKEN}`, headers: {} }) },
    { weight: 1, arbitrary: fc.constant({ path: '/infobip-dlr', headers: { 'x-webhook-token': DLR_TOKEN } }) },
    {
      weight: 1,
      arbitrary: fc
        .stringMatching(/^[\x21-\x7e]{0,40}$/)
        .map((wrong) => ({ path: `/infobip-dlr?token=${encodeURIComponent(wrong)}`, headers: { 'x-webhook-token': wrong || 'x' } })),
    },
  )
  await fc.assert(
    fc.asyncProperty(rawBody(envelopes), contentType, tokens, async (body, type, token) => {
      const headers: Record<string, string> = { ...token.headers, ...(type ? { 'content-type': type } : {}) }
      const { res, writes } = await observe(() => api.request('POST', token.path, { body, headers }))
      count(stats.dlr, res.status)
      if (res.status >= 500) return fail(t, `/infobip-dlr answered ${res.status}: ${res.text}`)
      // A wrong token counts one failed authentication of the address: not data.
      const stored = writes.filter((k) => !k.includes(':authfail:'))
      if (res.status >= 400) return stored.length === 0 || fail(t, `/infobip-dlr answered ${res.status} but wrote ${stored.slice(0, 5).join(', ')}`)
      const jobKeys = writes.filter((k) => k.startsWith(`${stack.queuePrefix}:dlr:`) && /:\d+$/.test(k))
      if (jobKeys.length !== 1) return fail(t, `a 200 wrote ${jobKeys.length} dlr jobs`)
      const job = await dlrQueue.getJob(jobKeys[0]!.split(':').pop()!)
      const sent = (JSON.parse(Buffer.isBuffer(body) ? body.toString() : body) as { results: unknown[] }).results
      if (!job || !('body' in job.data) || job.data.body !== (Buffer.isBuffer(body) ? body.toString() : body))
        return fail(t, 'the dlr job does not hold exactly the body sent')
      return res.json<{ received: number }>().received === sent.length || fail(t, 'received is not the number of results')
    }),
    { seed, numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  )
  t.ok(stats.dlr['200']! > 0, `200 answers were checked too: ${JSON.stringify(stats.dlr)}`)
})

t.test('a report nested 10,000 deep answers 4xx, not 5xx', async (t) => {
  const body = `{"results":[${'['.repeat(10_000)}${']'.repeat(10_000)}]}`
  const { res, writes } = await observe(() => api.request('POST', `/infobip-dlr?token=${DLR_TOKEN}`, { body, headers: { 'content-type': 'application/json' } }))
  t.equal(writes.length, 0, 'nothing stored')
  t.ok(res.status < 500, `answered ${res.status}`)
})

t.test('the API process is still alive and healthy', async (t) => {
  t.ok(apiProc.alive, 'the process never died')
  t.equal((await api.get('/health')).status, 200)
  t.equal((await api.get('/ready')).status, 200)
  t.comment(`answers: /messages ${JSON.stringify(stats.messages)}; /messages/batch ${JSON.stringify(stats.batch)}; /infobip-dlr ${JSON.stringify(stats.dlr)}`)
})
