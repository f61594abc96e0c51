import { pino } from 'pino'
import { Webhook } from 'standardwebhooks'
import t, { type Test } from 'tap'
import { isForbiddenAddress } from '../src/callback-url.js'
import { verifyWebhook } from '../src/webhooks.js'
import type { Job } from 'bullmq'
import type { CallbackJob } from '../src/callbacks.js'
import type { Transition } from '../src/domain/message.js'
import { makeApplyTransitions } from '../src/changes.js'
import { makeCallbackProcessor } from '../workers/callback.js'
import { AUTH, buildTestApp, CALLBACK_SECRET, startSystem, testConfig, waitFor, callbackReceiver } from './helpers/index.js'

/** The whole system, and a way to send a message with a callback URL. */
async function system(t: Test, env: Record<string, string | number | boolean> = {}) {
  const { app, config } = await startSystem(t, 'callbacks', { CALLBACK_BACKOFF_MS: 100, ...env })
  const send = async (to: string, callbackUrl: string) => {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to, text: 'hi', reference: 'order-7', callbackUrl } })
    t.equal(res.statusCode, 202, res.body)
    return res.json().id as string
  }
  return { app, config, send }
}

t.test('every status change after QUEUED is POSTed, signed per Standard Webhooks, in seq order', async (t) => {
  const hook = await callbackReceiver(t)
  const { send } = await system(t)
  const id = await send('+41793020010', hook.url)
  await waitFor(() => hook.received.some((r) => r.json.final), 15_000, 'the final callback')
  const mine = hook.received.filter((r) => r.json.messageId === id)
  t.same(
    mine.map((r) => r.json.status),
    ['PENDING', 'SENT', 'DELIVERED'],
  )
  t.same(
    mine.map((r) => r.json.seq),
    [2, 3, 4],
    'seq order',
  )
  t.match(mine[2]!.json, {
    eventId: `${id}-4`,
    messageId: id,
    reference: 'order-7',
    status: 'DELIVERED',
    previousStatus: 'SENT',
    final: true,
    infobip: { status: { groupId: 3, id: 5 } },
  })
  const verifier = new Webhook(CALLBACK_SECRET)
  for (const r of mine) {
    t.equal(r.headers['webhook-id'], r.json.eventId)
    t.match(r.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+=*$/)
    t.doesNotThrow(() => verifier.verify(r.body, r.headers as Record<string, string>), 'an off-the-shelf Standard Webhooks library verifies it')
    t.ok(verifyWebhook(CALLBACK_SECRET, r.headers, r.body), 'so does the exported verifier')
    t.notOk(verifyWebhook(CALLBACK_SECRET, r.headers, r.body.replace('hi', 'ho') + ' '), 'a changed body fails')
  }
})

t.test('a 500 is retried with the same webhook-id until it succeeds', async (t) => {
  const hook = await callbackReceiver(t, (_r, n) => (n <= 2 ? 500 : 200))
  const { send } = await system(t)
  const id = await send('+41793020009', hook.url) // 0009: no report, so one event: PENDING
  await waitFor(() => hook.received.length >= 3, 15_000, 'three deliveries')
  t.same(
    hook.received.map((r) => r.json.eventId),
    [`${id}-2`, `${id}-2`, `${id}-2`],
  )
})

t.test('410 Gone stops every later delivery for the message', async (t) => {
  const hook = await callbackReceiver(t, () => 410)
  const { app, send } = await system(t)
  const id = await send('+41793026727', hook.url)
  await waitFor(async () => (await app.store.get(id))?.status === 'DELIVERED', 15_000, 'delivered')
  await waitFor(async () => (await app.queues.callback.getJobCounts('waiting', 'active', 'delayed')).waiting === 0, 5000, 'callback queue drained')
  t.same(
    hook.received.map((r) => r.json.status),
    ['PENDING'],
    'DELIVERED was never sent',
  )
})

t.test('a callback that exhausts its retries is dead-lettered and can be replayed', async (t) => {
  let healthy = false
  const hook = await callbackReceiver(t, () => (healthy ? 200 : 503))
  const { app, send } = await system(t, { CALLBACK_MAX_ATTEMPTS: 2 })
  const id = await send('+41793020009', hook.url)
  const eventId = `${id}-2`
  await waitFor(async () => (await app.queues.callback.getJob(eventId))?.isFailed(), 15_000, 'dead letter')
  t.equal(hook.received.length, 2)
  const early = await app.inject({ method: 'POST', url: `/callbacks/${id}-9/replay`, headers: AUTH })
  t.equal(early.statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: `/callbacks/${eventId}/replay` })).statusCode, 401)
  healthy = true
  const replay = await app.inject({ method: 'POST', url: `/callbacks/${eventId}/replay`, headers: AUTH })
  t.equal(replay.statusCode, 202)
  await waitFor(() => hook.received.length === 3, 10_000, 'replayed delivery')
  t.equal(hook.received[2]!.headers['webhook-id'], eventId)
})

t.test('SSRF: callback URLs on private addresses are refused unless CALLBACK_ALLOW_PRIVATE', async (t) => {
  const app = await buildTestApp(t, testConfig('ssrf', { CALLBACK_ALLOW_PRIVATE: false }))
  const refused = [
    'http://127.0.0.1:8080/x',
    'http://localhost:8080/x', // a hostname that resolves to 127.0.0.1
    'http://10.1.2.3/x',
    'http://192.168.1.1/x',
    'http://172.16.0.5/x',
    'http://169.254.169.254/latest/meta-data/',
    'http://100.64.0.1/x',
    'http://[::1]/x',
    'http://[fd00::1]/x',
    'http://[::ffff:127.0.0.1]/x',
    'http://[::127.0.0.1]/x', // IPv4-compatible: the URL spells it ::7f00:1
    'http://168.63.129.16/x', // Azure's host endpoint, an ordinary unicast address
    'http://0.0.0.0/x',
    'http://no-such-host.invalid/x',
  ]
  for (const callbackUrl of refused) {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'x', callbackUrl } })
    t.equal(res.statusCode, 400, callbackUrl)
    t.match(res.json().message, /^body\/callbackUrl is refused: host /)
  }
  const batch = await app.inject({
    method: 'POST',
    url: '/messages/batch',
    headers: AUTH,
    payload: {
      messages: [
        { to: '+41793026727', text: 'x' },
        { to: '+41793026727', text: 'x', callbackUrl: 'http://localhost/x' },
      ],
    },
  })
  t.match(batch.json().message, /^body\/messages\/1\/callbackUrl is refused/)
  const ok = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: AUTH,
    payload: { to: '+41793026727', text: 'x', callbackUrl: 'https://93.184.216.34/hook' },
  })
  t.equal(ok.statusCode, 202, 'a public address is accepted')
  t.ok(isForbiddenAddress('169.254.169.254') && isForbiddenAddress('fd00:ec2::254') && !isForbiddenAddress('8.8.8.8'))
})

t.test('without CALLBACK_SIGNING_SECRET a callbackUrl is refused', async (t) => {
  const config = { ...testConfig('nosecret'), CALLBACK_SIGNING_SECRET: undefined }
  const app = await buildTestApp(t, config)
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: AUTH,
    payload: { to: '+41793026727', text: 'x', callbackUrl: 'https://93.184.216.34/hook' },
  })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /callbackUrl cannot be used/)
})

t.test('at delivery time, a host that resolves to a private address is refused (DNS rebinding)', async (t) => {
  const hook = await callbackReceiver(t)
  const app = await buildTestApp(t, testConfig('rebinding'))
  const processor = makeCallbackProcessor({
    store: app.store,
    queue: app.queues.callback,
    log: pino({ level: 'silent' }),
    secret: () => CALLBACK_SECRET,
    allowPrivate: false,
  })
  t.teardown(() => processor.close())
  // The URL passed the check when the message was accepted; now its name points to 127.0.0.1.
  const url = hook.url.replace('127.0.0.1', 'localhost')
  const payload = { eventId: 'msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F-2', messageId: 'msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F', seq: 2 }
  const job = { id: payload.eventId, attemptsMade: 0, data: { url, payload } } as unknown as Job<CallbackJob>
  await t.rejects(processor(job), /forbidden address/)
  t.equal(hook.received.length, 0, 'nothing reached the private address')
})

t.test('a report applied again (a worker died before adding its callback) gets its callback job back', async (t) => {
  const app = await buildTestApp(t, testConfig('cb-replay'))
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: AUTH,
    payload: { to: '+41793026727', text: 'x', callbackUrl: 'https://93.184.216.34/hook' },
  })
  const id = res.json().id as string
  const report: Transition = {
    id,
    status: 'DELIVERED',
    source: 'dlr',
    infobipStatus: 'DELIVERED_TO_HANDSET',
    infobip: { status: { groupId: 3, id: 5 } },
    fingerprint: '5|0|x',
  }
  const apply = makeApplyTransitions({ store: app.store, callbackQueue: app.queues.callback, callbackOptions: {} })
  // The status change lands, but its callback job is lost with the worker that made it.
  const [first] = await app.store.transition([report])
  t.equal(first!.result, 'applied')
  t.equal(await app.queues.callback.getJob(`${id}-2`), undefined)
  // The job is retried: the report is a duplicate now, and its callback comes back.
  const [again] = await apply([report])
  t.match(again, { result: 'duplicate', earlier: { seq: 2, previous: 'QUEUED' } })
  const job = await app.queues.callback.getJob(`${id}-2`)
  t.match(job?.data, { url: 'https://93.184.216.34/hook', payload: { eventId: `${id}-2`, status: 'DELIVERED', previousStatus: 'QUEUED', seq: 2, final: true } })
  // A duplicate of a report that changed nothing adds nothing.
  const [late] = await apply([{ ...report, status: 'PENDING', fingerprint: '7|0|y' }])
  t.equal(late!.result, 'ignored')
  const [lateAgain] = await apply([{ ...report, status: 'PENDING', fingerprint: '7|0|y' }])
  t.same(lateAgain, { result: 'duplicate' })
  t.equal(await app.queues.callback.count(), 1)
})
