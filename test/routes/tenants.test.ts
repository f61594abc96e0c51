import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Webhook } from 'standardwebhooks'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loggerOptions } from '../../src/logger.js'
import { startWorkers } from '../../workers/start.js'
import {
  buildTestApp,
  CALLBACK_SECRET,
  cleanup,
  countWrites,
  startSimulator,
  startSystem,
  testConfig,
  waitFor,
  writeTenantsFile,
  callbackReceiver,
  type ReceivedCallback,
  keysUnder,
} from '../helpers/index.js'

/** Two tenants besides `default` (API_KEYS): acme with two keys and its own settings, beta with none. */
const KEY_A = 'sk_acme_live_0123456789abcdef'
const KEY_A2 = 'sk_acme_next_0123456789abcdef'
const KEY_B = 'sk_beta_live_0123456789abcdef'
const SECRET_A = `whsec_${Buffer.from('acme-signing-secret-0123456789ab').toString('base64')}`
const A = { authorization: `Bearer ${KEY_A}` }
const A2 = { authorization: `Bearer ${KEY_A2}` }
const B = { authorization: `Bearer ${KEY_B}` }

const tenants = (t: Test, acme: Record<string, unknown> = {}) =>
  writeTenantsFile(t, {
    acme: { apiKeys: [KEY_A, KEY_A2], defaultSender: 'ACME', allowedSenders: ['ACME', 'ACMEALERTS'], callbackSigningSecret: SECRET_A, ...acme },
    beta: { apiKeys: [KEY_B] },
  })

t.test('isolation: another tenant’s message is unknown on every route that takes an id, a reference, a number or a cursor', async (t) => {
  const { app } = await startSystem(t, 'tenants', { TENANTS_FILE: tenants(t), CALLBACK_MAX_ATTEMPTS: 1, WORKER_QUEUES: 'send,dlr,callback' })
  const dead = await callbackReceiver(t, () => 500)
  const post = (headers: Record<string, string>, payload: object, extra: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/messages', headers: { ...headers, ...extra }, payload })
  const get = (headers: Record<string, string>, url: string) => app.inject({ url, headers })

  const mine = await post(A, { to: '+41793024242', text: 'acme only', reference: 'campaign-1', callbackUrl: dead.url })
  t.equal(mine.statusCode, 202, mine.body)
  const id = mine.json<{ id: string }>().id
  const theirs = await post(B, { to: '+41793025353', text: 'beta only', reference: 'campaign-1' })
  t.equal(theirs.statusCode, 202)

  // GET /messages/{id}: the same answer as for an id that never existed, in as many Redis round trips.
  const unknownId = `${id.slice(0, -4)}ZZZZ`
  const writes = countWrites(t, app.redis, /:metrics|:meta\b/)
  const foreign = await get(B, `/messages/${id}`)
  const foreignTrips = writes.count
  writes.reset()
  const unknown = await get(B, `/messages/${unknownId}`)
  t.equal(foreign.statusCode, 404)
  t.same(
    foreign.json(),
    { ...unknown.json<object>(), message: unknown.json<{ message: string }>().message.replace(unknownId, id) },
    'the same body as an unknown id',
  )
  t.equal(foreignTrips, writes.count, `the same Redis round trips (${foreignTrips})`)
  t.equal((await get(A2, `/messages/${id}`)).statusCode, 200, 'the owner’s other key sees it')

  // GET /messages: by reference, by number, by status, unfiltered, and from a cursor of the other tenant’s id.
  for (const query of ['reference=campaign-1', 'to=%2B41793024242', 'status=QUEUED', 'status=PENDING', '', `cursor=${id}`, 'limit=500']) {
    const page = await get(B, `/messages?${query}`)
    t.equal(page.statusCode, 200, query)
    const ids = page.json<{ messages: { id: string }[] }>().messages.map((m) => m.id)
    t.notOk(ids.includes(id), `beta never finds acme’s message (?${query})`)
    t.notOk(page.json<{ nextCursor: string | null }>().nextCursor === id, 'nor gets it as a cursor')
  }
  t.same(
    (await get(A, '/messages?reference=campaign-1')).json<{ messages: { id: string }[] }>().messages.map((m) => m.id),
    [id],
    'acme’s search finds its own and only its own',
  )
  const keys = await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:t:beta:idx:*`)
  t.ok(keys.length > 0, 'beta has indexes')
  const entries = (await Promise.all(keys.map((k) => app.redis.zrange(k, '0', '-1')))).flat()
  t.notOk(entries.includes(id), 'beta’s indexes hold no entry of acme’s')

  // POST /callbacks/{eventId}/replay: acme’s dead-lettered callback is unknown to beta.
  const eventId = `${id}-2`
  await waitFor(async () => (await app.queues.callback.getJob(eventId))?.isFailed(), 15_000, 'the dead-lettered callback')
  const replayB = await app.inject({ method: 'POST', url: `/callbacks/${eventId}/replay`, headers: B })
  const replayUnknown = await app.inject({ method: 'POST', url: `/callbacks/${id.slice(0, -4)}ZZZZ-2/replay`, headers: B })
  t.equal(replayB.statusCode, 404)
  t.same(replayB.json<{ message: string }>().message, replayUnknown.json<{ message: string }>().message.replace(`${id.slice(0, -4)}ZZZZ`, id))
  t.ok(await app.queues.callback.getJob(eventId).then((j) => j?.isFailed()), 'and stays dead-lettered')
  t.equal((await app.inject({ method: 'POST', url: `/callbacks/${eventId}/replay`, headers: A2 })).statusCode, 202, 'the owner replays it')

  // Idempotency keys are per tenant, and shared by a tenant’s keys.
  const first = await post(A, { to: '+41793024242', text: 'once' }, { 'idempotency-key': 'order-9' })
  const sameKeyB = await post(B, { to: '+41793024242', text: 'once' }, { 'idempotency-key': 'order-9' })
  const rotated = await post(A2, { to: '+41793024242', text: 'once' }, { 'idempotency-key': 'order-9' })
  t.equal(first.statusCode, 202)
  t.equal(sameKeyB.statusCode, 202, 'the same Idempotency-Key of another tenant is a new request')
  t.not(sameKeyB.json<{ id: string }>().id, first.json<{ id: string }>().id)
  t.equal(rotated.statusCode, 200, 'another key of the same tenant replays it')
  t.equal(rotated.json<{ id: string }>().id, first.json<{ id: string }>().id)
})

t.test('senders: the tenant’s defaultSender, and only its allowedSenders', async (t) => {
  const app = await buildTestApp(t, testConfig('tenants-from', { TENANTS_FILE: tenants(t) }))
  const post = (headers: Record<string, string>, extra: object) =>
    app.inject({ method: 'POST', url: '/messages', headers, payload: { to: '+41793024242', text: 'x', ...extra } })
  t.equal((await post(A, {})).json<{ from: string }>().from, 'ACME')
  t.equal((await post(A, { from: 'ACMEALERTS' })).json<{ from: string }>().from, 'ACMEALERTS')
  const refused = await post(A, { from: 'BETA' })
  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { message: /^body\/from must be one of this tenant's allowed senders \(ACME, ACMEALERTS\)/ })
  const batch = await app.inject({
    method: 'POST',
    url: '/messages/batch',
    headers: A,
    payload: {
      messages: [
        { to: '+41793024242', text: 'x' },
        { to: '+41793024242', text: 'x', from: 'Other' },
      ],
    },
  })
  t.match(batch.json(), { statusCode: 400, message: /^body\/messages\/1\/from must be one of/ })
  t.equal((await post(B, { from: 'Anything' })).json<{ from: string }>().from, 'Anything', 'a tenant without allowedSenders may use any')
  t.equal((await post(B, {})).json<{ from: string }>().from, 'InfoSMS', 'and defaults to INFOBIP_SENDER')
})

t.test('rate limits: a tenant’s keys share its rateLimitPerMinute; other tenants have the global one', async (t) => {
  const config = testConfig('tenants-limit', { TENANTS_FILE: tenants(t, { rateLimitPerMinute: 3 }), RATE_LIMIT_PER_MINUTE: 5 })
  const app = await buildTestApp(t, config)
  const codes = async (headers: Record<string, string>, n: number) => {
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push((await app.inject({ url: '/messages?limit=1', headers })).statusCode)
    return out
  }
  t.same([...(await codes(A, 2)), ...(await codes(A2, 2))], [200, 200, 200, 429], 'two keys, one budget of 3')
  const replay = await app.inject({ method: 'POST', url: '/callbacks/msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F-2/replay', headers: A2 })
  t.equal(replay.statusCode, 429, 'a replay counts against the same budget')
  const b = await app.inject({ url: '/messages?limit=1', headers: B })
  t.equal(b.headers['x-ratelimit-limit'], '5', 'beta has the global limit')
  t.same([b.statusCode, ...(await codes(B, 5))], [200, 200, 200, 200, 200, 429])
})

t.test('callbacks are signed with the tenant’s secret, else the global one', async (t) => {
  const hook = await callbackReceiver(t)
  const { app } = await startSystem(t, 'tenants-sign', { TENANTS_FILE: tenants(t) })
  const send = async (headers: Record<string, string>) => {
    const res = await app.inject({ method: 'POST', url: '/messages', headers, payload: { to: '+41793024242', text: 'x', callbackUrl: hook.url } })
    return res.json<{ id: string }>().id
  }
  const [a, b] = [await send(A), await send(B)]
  const final = (id: string) => hook.received.find((r) => r.json.messageId === id && r.json.final)
  await waitFor(() => final(a) && final(b), 15_000, 'both final callbacks')
  const verify = (secret: string, r: ReceivedCallback) => {
    try {
      new Webhook(secret).verify(r.body, r.headers as Record<string, string>)
      return true
    } catch {
      return false
    }
  }
  t.ok(verify(SECRET_A, final(a)!), 'acme’s callback verifies with acme’s secret')
  t.notOk(verify(CALLBACK_SECRET, final(a)!), 'and not with the global one')
  t.ok(verify(CALLBACK_SECRET, final(b)!), 'beta’s verifies with the global secret')
})

t.test('metrics and logs name the tenant', async (t) => {
  const { app } = await startSystem(t, 'tenants-metrics', { TENANTS_FILE: tenants(t) })
  for (const headers of [A, A, B]) await app.inject({ method: 'POST', url: '/messages', headers, payload: { to: '+41793024242', text: 'x' } })
  await waitFor(
    async () => {
      const text = (await app.inject({ url: '/metrics' })).body
      return (
        text.includes('sms_messages_created_total{tenant="acme"} 2') &&
        text.includes('sms_messages_created_total{tenant="beta"} 1') &&
        text.includes('sms_status_transitions_total{status="DELIVERED",tenant="acme"} 2') &&
        text.includes('sms_status_transitions_total{status="DELIVERED",tenant="default"} 0')
      )
    },
    15_000,
    'tenant labels on the created and transition counters',
  )
  t.pass('sms_messages_created_total and sms_status_transitions_total carry the tenant')
})

t.test('request and job log lines name the tenant', async (t) => {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  const sim = await startSimulator(t, testConfig('tenants-log-sim'))
  const base = testConfig('tenants-log', { TENANTS_FILE: tenants(t), INFOBIP_BASE_URL: sim.url, LOG_LEVEL: 'debug' })
  const app = await buildApp(base, { logger: { ...loggerOptions('debug'), stream } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const config = { ...base, PUBLIC_BASE_URL: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, WORKER_QUEUES: 'send,dlr' }
  const workers = await startWorkers(config, pino(loggerOptions('debug'), stream))
  t.teardown(async () => {
    await workers.close()
    await app.close()
    await cleanup(config.KEY_PREFIX)
  })
  const res = await app.inject({ method: 'POST', url: '/messages', headers: A, payload: { to: '+41793024242', text: 'x' } })
  const id = res.json<{ id: string }>().id
  const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  await waitFor(() => parsed().some((l) => l.jobId === id && l.tenant === 'acme'), 10_000, 'a send job line naming the tenant')
  const completed = parsed().find((l) => l.msg === 'request completed' && (l.res as { statusCode?: number } | undefined)?.statusCode === 202)
  t.equal(completed?.tenant, 'acme', 'the request’s completion line names its tenant')
  t.ok(
    parsed().some((l) => l.jobId === id && l.tenant === 'acme'),
    'the send job’s lines name it',
  )
})
