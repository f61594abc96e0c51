import t from 'tap'
import { AUTH, buildTestApp, CALLBACK_SECRET, startSystem, testConfig, waitFor, writeTenantsFile } from '../helpers/index.js'

const OTHER = 'sk_other_live_0123456789abcdef'
const config = testConfig('cancel', {
  TENANTS_FILE: '',
  CALLBACK_SIGNING_SECRET: CALLBACK_SECRET,
})
const tenantsFile = writeTenantsFile(t, { other: { apiKeys: [OTHER] } })
const app = await buildTestApp(t, { ...config, TENANTS_FILE: tenantsFile })
const later = () => new Date(Date.now() + 3600_000).toISOString()
const post = (payload: unknown, url = '/messages', headers: Record<string, string> = AUTH) =>
  app.inject({ method: 'POST', url, headers, payload: payload as object })
const cancel = (id: string, headers: Record<string, string> = AUTH) => app.inject({ method: 'POST', url: `/messages/${id}/cancel`, headers })

t.test('a scheduled message is cancelled: CANCELED, final, an api event, its callback, and its delayed job gone', async (t) => {
  const res = await post({ to: '+41793026727', text: 'reminder', sendAt: later(), callbackUrl: 'http://127.0.0.1:9999/hook' })
  const { id } = res.json<{ id: string }>()
  t.ok(await app.queues.send.getJob(id).then((j) => j?.isDelayed()), 'a delayed job waits')
  const canceled = await cancel(id)
  t.equal(canceled.statusCode, 200)
  t.match(canceled.json(), {
    id,
    status: 'CANCELED',
    final: true,
    events: [
      { seq: 1, status: 'QUEUED' },
      { seq: 2, status: 'CANCELED', source: 'api' },
    ],
  })
  t.equal((await app.inject({ url: `/messages/${id}`, headers: AUTH })).json<{ status: string }>().status, 'CANCELED')
  t.equal(await app.queues.send.getJob(id), undefined, 'the delayed job is removed, not left to fire')
  t.match(
    (await app.queues.callback.getJob(`${id}-2`))?.data,
    { payload: { messageId: id, status: 'CANCELED', previousStatus: 'QUEUED', final: true } },
    'the callback',
  )

  const again = await cancel(id)
  t.equal(again.statusCode, 409, 'a final message cannot be cancelled')
  t.match(again.json(), { statusCode: 409, error: 'Conflict', message: /is CANCELED: it is final/, resource: { id, status: 'CANCELED' } })
})

t.test('cancelling one message of a scheduled batch takes it out of the shared job; the last one removes the job', async (t) => {
  const sendAt = later()
  const res = await post({ messages: [1, 2, 3].map((i) => ({ to: `+4179302671${i}`, text: 'x', sendAt })) }, '/messages/batch')
  const ids = res.json<{ messages: { id: string }[] }>().messages.map((m) => m.id)
  const jobId = ids[0]!
  t.same((await app.queues.send.getJob(jobId))?.data.ids, ids, 'one delayed job for the three')
  t.equal((await cancel(ids[1]!)).statusCode, 200)
  t.same((await app.queues.send.getJob(jobId))?.data.ids, [ids[0], ids[2]], 'the cancelled one leaves the job')
  for (const id of [ids[0]!, ids[2]!]) t.equal((await cancel(id)).statusCode, 200)
  t.equal(await app.queues.send.getJob(jobId), undefined, 'the job goes with its last message')
})

t.test('unknown or another tenant’s message: 404, exactly like GET', async (t) => {
  const { id } = (await post({ to: '+41793026727', text: 'mine', sendAt: later() })).json<{ id: string }>()
  const foreign = await cancel(id, { authorization: `Bearer ${OTHER}` })
  t.equal(foreign.statusCode, 404)
  t.same(foreign.json(), (await app.inject({ url: `/messages/${id}`, headers: { authorization: `Bearer ${OTHER}` } })).json())
  t.equal((await app.inject({ url: `/messages/${id}`, headers: AUTH })).json<{ status: string }>().status, 'QUEUED', 'and it is untouched')
  t.equal((await cancel('msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F')).statusCode, 404)
  const campaign = await post({ reference: 'mine-only' }, '/messages/cancel', { authorization: `Bearer ${OTHER}` })
  t.same(campaign.json(), { canceled: 0, notCanceled: 0 }, 'another tenant’s campaign cancel finds nothing of mine')
})

t.test('a campaign is cancelled by reference, in pages, whatever its size', async (t) => {
  const sendAt = later()
  const total = 2500
  const delayed = async () => (await app.queues.send.getJobCounts('delayed')).delayed ?? 0
  const before = await delayed()
  for (let i = 0; i < total; i += 1000) {
    const messages = Array.from({ length: Math.min(1000, total - i) }, () => ({ to: '+41793026727', text: 'wrong text', reference: 'campaign-7', sendAt }))
    t.equal((await post({ messages }, '/messages/batch')).statusCode, 202)
  }
  t.equal(await delayed(), before + total / 100, 'their 25 delayed send jobs')
  const res = await post({ reference: 'campaign-7' }, '/messages/cancel')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { canceled: total, notCanceled: 0 })
  t.equal(await delayed(), before, 'their delayed jobs are removed')
  const page = await app.inject({ url: '/messages?reference=campaign-7&status=CANCELED&limit=500', headers: AUTH })
  t.equal(page.json<{ messages: unknown[] }>().messages.length, 500)
  t.same((await post({ reference: 'campaign-7' }, '/messages/cancel')).json(), { canceled: 0, notCanceled: total }, 'a second cancel finds them final')
  t.match((await post({}, '/messages/cancel')).json(), { statusCode: 400, message: /body\/reference is required/ })
})

t.test('a submitted message cannot be cancelled (409 with its resource); the campaign counts it in notCanceled', async (t) => {
  const { app } = await startSystem(t, 'cancel-sent', { WORKER_QUEUES: 'send,dlr' })
  const { id } = (
    await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'now', reference: 'sent-1' } })
  ).json<{ id: string }>()
  await waitFor(async () => (await app.inject({ url: `/messages/${id}`, headers: AUTH })).json<{ final: boolean }>().final, 10_000, 'delivered')
  const res = await app.inject({ method: 'POST', url: `/messages/${id}/cancel`, headers: AUTH })
  t.equal(res.statusCode, 409)
  t.match(res.json(), { message: /is DELIVERED: it is final/, resource: { id, status: 'DELIVERED' } })
  t.same((await app.inject({ method: 'POST', url: '/messages/cancel', headers: AUTH, payload: { reference: 'sent-1' } })).json(), {
    canceled: 0,
    notCanceled: 1,
  })
})
