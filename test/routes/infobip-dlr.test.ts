import { DEFAULT_TENANT } from '../../src/tenants.js'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { newMessageId } from '../../src/accept-messages.js'
import { loggerOptions } from '../../src/logger.js'
import fp from 'fastify-plugin'
import dlrAuth from '../../src/plugins/dlr-auth.js'
import { dlrResults } from '../../src/queues.js'
import { makeDlrProcessor } from '../../workers/dlr.js'
import { buildTestApp, cleanup, countWrites, DLR_TOKEN, testConfig } from '../helpers/index.js'
import { STATUSES, v2Report, v3Report } from '../helpers/reports.js'

/** For dlr-auth on a bare instance: the throttle it depends on, refusing nothing and counting nothing. */
const noThrottle = fp(async (app) => void app.decorate('authFailures', { retryAfter: async () => 0, check: async () => {}, record: async () => {} }), {
  name: 'auth-throttle',
})

const config = testConfig('dlr-route')
const app = await buildTestApp(t, config)
// The jobs of every partition (these tests' reports and messages all go to one).
const queues = app.queues.dlr
const queue = {
  getWaiting: async () => (await Promise.all(queues.partitions.map((q) => q.getWaiting()))).flat(),
}
t.beforeEach(() => Promise.all(queues.partitions.map((q) => q.drain())))

const URL_WITH_TOKEN = `/infobip-dlr?token=${DLR_TOKEN}`
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const post = (payload: unknown, options: { url?: string; headers?: Record<string, string> } = {}) =>
  app.inject({
    method: 'POST',
    url: options.url ?? URL_WITH_TOKEN,
    headers: { 'content-type': 'application/json', ...options.headers },
    payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
  })
const storedJobs = async () => (await queue.getWaiting()).map((job) => dlrResults(job.data))

t.test('the token is accepted as ?token=, X-Webhook-Token or the Basic password; the batch is stored as sent', async (t) => {
  const batches = [
    [v3Report('m1')],
    [v2Report('m2'), v3Report('m3', STATUSES.PENDING_ENROUTE)],
    [{ messageId: 'm4', status: STATUSES.EXPIRED_EXPIRED, future: { x: 1 } }],
  ]
  const forms: { url?: string; headers?: Record<string, string> }[] = [
    {},
    { url: '/infobip-dlr', headers: { 'x-webhook-token': DLR_TOKEN } },
    { url: '/infobip-dlr', headers: { authorization: basic('infobip', DLR_TOKEN) } },
  ]
  for (const [i, form] of forms.entries()) {
    const res = await post({ results: batches[i] }, form)
    t.equal(res.statusCode, 200, JSON.stringify(form))
    t.same(res.json(), { received: batches[i]!.length })
  }
  // One job per POST, unknown fields and all.
  t.same(
    (await storedJobs()).sort((a, b) => a.length - b.length),
    [batches[0], batches[2], batches[1]],
  )
})

t.test('a POST costs one round trip to Redis: the job, nothing else', async (t) => {
  await post({ results: [v3Report('warm-up')] })
  const writes = countWrites(t, app.queueRedis)
  t.equal((await post({ results: Array.from({ length: 100 }, (_, i) => v3Report(`m${i}`)) })).statusCode, 200)
  t.equal(writes.count, 1)
})

t.test('a missing or wrong token in any form answers 401 and stores nothing', async (t) => {
  const body = { results: [v3Report('m1')] }
  const cases: [string, { url?: string; headers?: Record<string, string> }][] = [
    ['no token at all', { url: '/infobip-dlr' }],
    ['empty query token', { url: '/infobip-dlr?token=' }],
    ['wrong query token', { url: '/infobip-dlr?token=wrong-token-0123456789' }],
    ['query token with a suffix', { url: `/infobip-dlr?token=${DLR_TOKEN}x` }],
    ['wrong header', { url: '/infobip-dlr', headers: { 'x-webhook-token': 'wrong-token-0123456789' } }],
    ['wrong Basic password', { url: '/infobip-dlr', headers: { authorization: basic('infobip', 'wrong-token-0123456789') } }],
    ['token as the Basic user name', { url: '/infobip-dlr', headers: { authorization: basic(DLR_TOKEN, 'x') } }],
    ['token as a Bearer token', { url: '/infobip-dlr', headers: { authorization: `Bearer ${DLR_TOKEN}` } }],
  ]
  for (const [name, options] of cases) {
    const res = await post(body, options)
    t.equal(res.statusCode, 401, name)
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized' }, name)
  }
  t.same(await storedJobs(), [])
})

t.test('without DLR_WEBHOOK_TOKEN configured, nothing is accepted', async (t) => {
  const bare = Fastify()
  bare.decorate('config', testConfig('dlr-no-token', { DLR_WEBHOOK_TOKEN: '' }))
  await bare.register(noThrottle).register(dlrAuth)
  bare.post('/infobip-dlr', { onRequest: bare.authenticateInfobip }, async () => 'stored')
  for (const url of ['/infobip-dlr', '/infobip-dlr?token=', `/infobip-dlr?token=${DLR_TOKEN}`]) {
    t.equal((await bare.inject({ method: 'POST', url, payload: {} })).statusCode, 401, url)
  }
})

t.test('envelopes that are not { results: [...] } answer 400 and store nothing', async (t) => {
  const cases: [string, unknown, Record<string, string>?][] = [
    ['not JSON', '{"results": [', undefined],
    ['empty body', '', undefined],
    ['not JSON, as text/plain', 'results=1', { 'content-type': 'text/plain' }],
    ['not JSON, as a form', 'results=1', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['JSON null', 'null', undefined],
    ['an array', [v3Report('m1')], undefined],
    ['no results', { reports: [v3Report('m1')] }, undefined],
    ['results is an object', { results: { 0: v3Report('m1') } }, undefined],
    ['results is a string', { results: 'DELIVERED' }, undefined],
    ['results is null', { results: null }, undefined],
  ]
  for (const [name, payload, headers] of cases) {
    const res = await post(payload, { headers: headers ?? {} })
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().error, 'Bad Request', name)
  }
  t.same(await storedJobs(), [])
})

t.test('JSON without a JSON content type is still a batch (Infobip does not document its header)', async (t) => {
  for (const headers of [{ 'content-type': 'text/plain' }, { 'content-type': 'application/json; charset=UTF-8' }]) {
    t.equal((await post({ results: [v3Report('m1')] }, { headers })).statusCode, 200, headers['content-type'])
  }
  t.equal((await storedJobs()).length, 2)
})

t.test('2,000 realistic results fit; 2,001 answer 413; 10 MB answers 413 (401 first without a token)', async (t) => {
  const results = Array.from({ length: 2000 }, (_, i) => v3Report(`msg_${String(i).padStart(26, '0')}`))
  const pretty = JSON.stringify({ results }, null, 2)
  t.ok(pretty.length > 1_500_000, `2,000 pretty-printed reports take ${(pretty.length / 2 ** 20).toFixed(1)} MiB`)
  t.equal((await post(pretty)).statusCode, 200)
  t.equal((await storedJobs())[0]!.length, 2000)

  const tooMany = await post({ results: [...results, v3Report('one-more')] })
  t.equal(tooMany.statusCode, 413)
  t.match(tooMany.json().message, /2001 reports; at most 2000/)

  const huge = JSON.stringify({ results: [{ messageId: 'm', status: STATUSES.DELIVERED_TO_HANDSET, padding: 'x'.repeat(10 * 2 ** 20) }] })
  t.equal((await post(huge)).statusCode, 413)
  t.equal((await post(huge, { url: '/infobip-dlr' })).statusCode, 401)
  t.equal((await storedJobs()).length, 1)
})

t.test('a mixed batch: 200, every result stored, and the worker applies every good report', async (t) => {
  const ids = Array.from({ length: 4 }, () => newMessageId())
  await app.store.create(
    ids.map((id) => ({ id, tenant: DEFAULT_TENANT, to: '41793026727', from: 'InfoSMS', text: 'hi', encoding: 'GSM-7' as const, segments: 1 })),
  )
  const bad = [
    null,
    'DELIVERED',
    { messageId: 42, status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: ids[0], status: 'DELIVERED' },
    { messageId: ids[0], status: { groupId: '3', id: 5 } },
    { status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: ids[1] },
  ]
  const good = [
    v3Report(ids[0]!),
    v2Report(ids[1]!, STATUSES.EXPIRED_EXPIRED),
    v3Report(ids[2]!, STATUSES.DELIVERED_TO_OPERATOR),
    v3Report(ids[3]!, STATUSES.REJECTED_NETWORK),
  ]
  const results = [bad[0], good[0], bad[1], bad[2], good[1], bad[3], bad[4], good[2], bad[5], bad[6], good[3]]
  const res = await post({ results })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { received: results.length })

  const [job] = await queue.getWaiting()
  t.same(job!.data, { body: JSON.stringify({ results }) }, 'the body as it was sent')
  t.same(dlrResults(job!.data), results)
  const counted: Record<string, number> = {}
  const processor = makeDlrProcessor({ store: app.store, log: pino({ level: 'silent' }), onResult: (result, n) => (counted[result] = n) })
  t.same(await processor(job!), { applied: 4, duplicate: 0, ignored: 0, unmatched: 0, invalid: 7 })
  t.same(counted, { applied: 4, invalid: 7 })
  t.same(
    (await app.store.getMany(ids)).map((m) => m!.status),
    ['DELIVERED', 'EXPIRED', 'SENT', 'REJECTED'],
  )
})

t.test('DLR_ALLOWED_IPS: other sources get 403 even with the token; a bad list stops start-up', async (t) => {
  const limited = await buildTestApp(t, testConfig('dlr-ips', { DLR_ALLOWED_IPS: '10.0.0.0/8, 2001:db8::/32, 192.0.2.7' }))
  const from = (remoteAddress: string) =>
    limited.inject({ method: 'POST', url: URL_WITH_TOKEN, remoteAddress, headers: { 'content-type': 'application/json' }, payload: { results: [] } })
  for (const address of ['10.1.2.3', '::ffff:10.1.2.3', '2001:db8::1', '192.0.2.7']) t.equal((await from(address)).statusCode, 200, address)
  for (const address of ['127.0.0.1', '11.0.0.1', '2001:db9::1', '192.0.2.8']) t.equal((await from(address)).statusCode, 403, address)

  for (const list of ['10.0.0.0/33', 'example.com', '10.0.0.0/', '10.0.0.0/8/8']) {
    const config = testConfig('dlr-ips', { DLR_ALLOWED_IPS: list })
    await t.rejects(
      async () => void (await Fastify().decorate('config', config).register(noThrottle).register(dlrAuth).ready()),
      /Invalid configuration: DLR_ALLOWED_IPS/,
      list,
    )
  }
})

t.test('Redis unreachable: 503 with Retry-After, so that Infobip retries', async (t) => {
  const broken = await buildTestApp(t, testConfig('dlr-down'))
  broken.redis.disconnect()
  broken.queueRedis.disconnect()
  const res = await broken.inject({
    method: 'POST',
    url: URL_WITH_TOKEN,
    headers: { 'content-type': 'application/json' },
    payload: { results: [v3Report('m1')] },
  })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
})

t.test('the token never reaches a log line, whichever form carried it', async (t) => {
  let logs = ''
  const stream = new Writable({ write: (chunk, _enc, done) => ((logs += chunk), done()) })
  const logConfig = testConfig('dlr-logs', { LOG_LEVEL: 'trace' })
  const logged = await buildApp(logConfig, { logger: { ...loggerOptions('trace'), stream } })
  t.teardown(async () => {
    await logged.close()
    await cleanup(logConfig.KEY_PREFIX)
  })
  const wrong = 'wrong-token-abcdefghij'
  const send = (url: string, headers: Record<string, string> = {}, payload = JSON.stringify({ results: [v3Report('m1')] })) =>
    logged.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload })
  t.equal((await send(URL_WITH_TOKEN)).statusCode, 200)
  t.equal((await send(`/infobip-dlr?a=1&token=${DLR_TOKEN}&b=2`)).statusCode, 200)
  t.equal((await send(URL_WITH_TOKEN, {}, '{not json')).statusCode, 400)
  t.equal((await send(`/infobip-dlr?token=${wrong}`)).statusCode, 401)
  t.equal((await send('/infobip-dlr', { 'x-webhook-token': DLR_TOKEN })).statusCode, 200)
  t.equal((await send('/infobip-dlr', { 'x-webhook-token': wrong })).statusCode, 401)
  t.equal((await send('/infobip-dlr', { authorization: basic('u', DLR_TOKEN) })).statusCode, 200)
  t.equal((await send('/infobip-dlr', { authorization: basic('u', wrong) })).statusCode, 401)

  t.match(logs, /"url":"\/infobip-dlr\?token=\[redacted\]"/, 'requests are logged, with the token redacted')
  t.match(logs, /"statusCode":401/)
  t.notOk(logs.includes(DLR_TOKEN), 'the token appears nowhere')
  t.notOk(logs.includes(wrong), 'nor does a wrong one')
  t.notOk(logs.includes(Buffer.from(`u:${DLR_TOKEN}`).toString('base64')), 'nor the Basic credentials')
})
