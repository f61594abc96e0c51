import t from 'tap'
import { AUTH, countWrites, startSystem, waitFor, writeTenantsFile } from '../helpers/index.js'

const OTHER = { authorization: 'Bearer sk_other_live_0123456789abcdef' }

t.test('the suppression list: put, get, delete, list with a cursor, per tenant, any notation', async (t) => {
  const { app } = await startSystem(t, 'supp-routes', {
    TENANTS_FILE: writeTenantsFile(t, { other: { apiKeys: ['sk_other_live_0123456789abcdef'] } }),
    WORKER_QUEUES: 'send',
  })
  const put = (to: string, body?: object, headers = AUTH) =>
    app.inject({ method: 'PUT', url: `/suppressions/${encodeURIComponent(to)}`, headers, ...(body ? { payload: body } : {}) })
  const first = await put('+41 79 302 67 27', { reason: 'asked by phone' })
  t.equal(first.statusCode, 200)
  t.match(first.json(), { to: '41793026727', reason: 'asked by phone', source: 'api', createdAt: String })
  const again = await put('0041793026727')
  t.equal(again.json<{ createdAt: string }>().createdAt, first.json<{ createdAt: string }>().createdAt, 'idempotent: the same entry, stored normalised')
  t.equal((await app.inject({ url: '/suppressions/41793026727', headers: AUTH })).statusCode, 200)
  t.equal((await app.inject({ url: '/suppressions/41793026727', headers: OTHER })).statusCode, 404, 'another tenant’s list does not have it')
  t.match((await put('not a number')).json(), { statusCode: 400, message: /^params\/to must be a valid international phone number/ })

  for (let i = 0; i < 120; i++) await put(`+4179302${String(1000 + i)}`)
  const seen = new Set<string>()
  let cursor: string | null = null
  let pages = 0
  do {
    const page: { suppressions: { to: string }[]; nextCursor: string | null } = (
      await app.inject({ url: `/suppressions?limit=50${cursor ? `&cursor=${cursor}` : ''}`, headers: AUTH })
    ).json()
    for (const s of page.suppressions) seen.add(s.to)
    cursor = page.nextCursor
    pages++
  } while (cursor && pages < 50)
  t.equal(seen.size, 121, 'the cursor walks the whole list')
  t.equal((await app.inject({ url: '/suppressions', headers: OTHER })).json<{ suppressions: unknown[] }>().suppressions.length, 0)

  t.equal((await app.inject({ method: 'DELETE', url: '/suppressions/%2B41793026727', headers: AUTH })).statusCode, 204)
  t.equal((await app.inject({ method: 'DELETE', url: '/suppressions/%2B41793026727', headers: AUTH })).statusCode, 404)
})

t.test('a message to a suppressed number is accepted and ends REJECTED (SUPPRESSED), never reaching Infobip', async (t) => {
  const { app, sim } = await startSystem(t, 'supp-send', { WORKER_QUEUES: 'send,dlr,callback' })
  await app.inject({ method: 'PUT', url: '/suppressions/%2B41793026727', headers: AUTH })
  const writes = countWrites(t, app.redis, /:metrics|:meta\b/)
  await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793021111', text: 'yes' } })
  const normal = writes.count
  writes.reset()
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: AUTH,
    payload: { to: '+41793026727', text: 'no', callbackUrl: 'http://127.0.0.1:9999/hook' },
  })
  t.equal(res.statusCode, 202)
  t.match(res.json(), { status: 'REJECTED', final: true, error: { code: 'SUPPRESSED' }, events: [{ status: 'QUEUED' }, { status: 'REJECTED', source: 'api' }] })
  t.equal(writes.count, normal, `the check costs no round trip: ${writes.count} store round trips, as for any message`)
  const { id } = res.json<{ id: string }>()
  t.match((await app.queues.callback.getJob(`${id}-2`))?.data.payload, { status: 'REJECTED', previousStatus: 'QUEUED', final: true }, 'its callback')

  const batch = await app.inject({
    method: 'POST',
    url: '/messages/batch',
    headers: AUTH,
    payload: {
      messages: [
        { to: '+41793026727', text: 'a' },
        { to: '+41793021234', text: 'b' },
      ],
    },
  })
  t.equal(batch.statusCode, 202, 'a batch with a suppressed number is not refused')
  const [suppressed, sent] = batch.json<{ messages: { id: string; status: string }[] }>().messages
  t.equal(suppressed!.status, 'REJECTED')
  await waitFor(async () => (await app.store.get(sent!.id))?.final, 10_000, 'the other message delivered')
  t.equal((await app.store.get(sent!.id))!.status, 'DELIVERED', 'the others are sent')
  for (const m of [id, suppressed!.id]) t.equal((await sim.app.inject({ url: `/_sim/messages/${m}` })).statusCode, 404, 'Infobip never saw it')
})

t.test('a message queued or scheduled before its number was suppressed ends SUPPRESSED when it is claimed', async (t) => {
  const { app, sim } = await startSystem(t, 'supp-claim', { WORKER_QUEUES: 'send,dlr' })
  const sendAt = new Date(Date.now() + 1500).toISOString()
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793020808', text: 'later', sendAt } })
  const { id } = res.json<{ id: string }>()
  t.equal(res.json<{ status: string }>().status, 'QUEUED')
  await app.inject({ method: 'PUT', url: '/suppressions/41793020808', headers: AUTH })
  await waitFor(async () => (await app.store.get(id))?.final, 10_000, 'the scheduled message claimed')
  t.match(await app.store.get(id), {
    status: 'REJECTED',
    error: { code: 'SUPPRESSED' },
    events: [{ status: 'QUEUED' }, { status: 'REJECTED', source: 'send' }],
  })
  t.equal((await sim.app.inject({ url: `/_sim/messages/${id}` })).statusCode, 404, 'never submitted')
})
