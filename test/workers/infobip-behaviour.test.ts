import { DEFAULT_TENANT } from '../../src/tenants.js'
import t, { type Test } from 'tap'
import type { Message } from '../../src/domain/message.js'
import { AUTH, startSystem, waitFor } from '../helpers/index.js'
import { shardOf } from '../../src/shards.js'

/**
 * Infobip's real answers, staged by the simulator, through the API, real workers and real HTTP:
 * a key that stops working, a gateway's 502 after acceptance, a duplicate messageId, logs that lag.
 * See docs/infobip.md#http-answers.
 */

async function system(t: Test, name: string, env: Record<string, string | number> = {}, simEnv: Record<string, string | number> = {}) {
  const { app, sim, config } = await startSystem(t, name, { SEND_BACKOFF_MS: 50, RECONCILE_INTERVAL_SECONDS: 3600, ...env }, simEnv)
  const send = async (to: string) => {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to, text: 'hello' } })
    if (res.statusCode !== 202) throw new Error(`POST /messages answered ${res.statusCode}: ${res.body}`)
    return res.json<{ id: string }>().id
  }
  const final = (id: string, timeoutMs = 20_000) =>
    waitFor(
      async () => {
        const m = await app.store.get(id)
        return m?.final ? m : undefined
      },
      timeoutMs,
      `${id} to be final`,
    )
  const simMessage = async (id: string) => (await fetch(`${sim.url}/_sim/messages/${id}`)).json() as Promise<{ submissions: number; accepted: number }>
  const simAuth = (body: object) =>
    fetch(`${sim.url}/_sim/auth`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { app, sim, config, send, final, simMessage, simAuth }
}

const statuses = (m: Message) => m.events.map((e) => e.status)

t.test('401 for a few seconds: no message fails or uses up an attempt; all go out once when the key works again', async (t) => {
  const { app, send, final, simMessage, simAuth } = await system(t, 'auth401', { SEND_MAX_ATTEMPTS: 2 })
  await simAuth({ unauthorizedForMs: 3000 })
  const ids = await Promise.all(Array.from({ length: 5 }, (_, i) => send(`+4179302${String(6700 + i)}`)))
  const messages = await Promise.all(
    ids.map((id) =>
      final(id).catch(async (error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(await app.store.get(id))} ${JSON.stringify(await simMessage(id))}`)
      }),
    ),
  )
  for (const m of messages) {
    t.equal(m.status, 'DELIVERED', `${m.id} delivered`)
    t.notOk(statuses(m).includes('FAILED'))
  }
  for (const id of ids) t.match(await simMessage(id), { accepted: 1 }, 'Infobip accepted it once')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /sms_infobip_submissions_total\{outcome="http_401"\} [1-9]/, 'the refusals are counted as http_401')
})

t.test('403 from the logs API is the account’s problem, not an unknown message: nothing is resubmitted or failed', async (t) => {
  const { send, final, simMessage, simAuth } = await system(t, 'auth403', { SEND_MAX_ATTEMPTS: 2, INFOBIP_TIMEOUT_MS: 300 }, { SIM_LATENCY_MS: 600 })
  // The first answer times out: the next attempt must look the message up, and the key may not.
  await simAuth({ forbidden: 'logs' })
  const id = await send('+41793026727')
  await waitFor(async () => ((await simMessage(id)).accepted === 1 ? true : undefined), 5000, 'the first submission')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  await simAuth({ forbidden: false })
  const m = await final(id)
  t.equal(m.status, 'DELIVERED')
  t.match(await simMessage(id), { accepted: 1 })
})

t.test('0012: accepted, then answered 502 — one acceptance, DELIVERED, never FAILED', async (t) => {
  const { send, final, simMessage } = await system(t, 'gw502', { SEND_MAX_ATTEMPTS: 2 })
  const id = await send('+41793020012')
  const m = await final(id)
  t.equal(m.status, 'DELIVERED')
  t.match(await simMessage(id), { accepted: 1 })
})

t.test('23 REJECTED_DUPLICATE_MESSAGE_ID for a message submitted before is PENDING, never REJECTED', async (t) => {
  // 0012 and no logs yet (they lag): the second attempt finds nothing in the logs and resubmits; Infobip answers 23.
  const { send, final, simMessage } = await system(t, 'dup23', { SEND_MAX_ATTEMPTS: 3 }, { SIM_LOGS_LAG_MS: 60_000, SIM_DLR_DELAY_MS: 2000 })
  const id = await send('+41793020012')
  const m = await final(id)
  t.equal(m.status, 'DELIVERED')
  t.notOk(statuses(m).includes('REJECTED'))
  t.match(
    m.events.find((e) => e.status === 'PENDING'),
    { infobipStatus: 'REJECTED_DUPLICATE_MESSAGE_ID' },
  )
  t.match(await simMessage(id), { submissions: 2, accepted: 1 })
})

t.test('a timeout while the logs lag behind: Infobip’s duplicate check keeps it to one SMS', async (t) => {
  const { send, final, simMessage } = await system(t, 'lag', { INFOBIP_TIMEOUT_MS: 300 }, { SIM_LATENCY_MS: 600, SIM_LOGS_LAG_MS: 60_000 })
  const id = await send('+41793026727')
  const m = await final(id)
  t.equal(m.status, 'DELIVERED')
  t.match(await simMessage(id), { accepted: 1 }, 'one SMS')
})

t.test('a scheduled message lives MESSAGE_TTL_DAYS after its sendAt, not after its creation', async (t) => {
  const { app } = await system(t, 'ttl', { MESSAGE_TTL_DAYS: 1 })
  const sendAt = new Date(Date.now() + 10 * 24 * 3600_000).toISOString()
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'later', sendAt } })
  t.equal(res.statusCode, 202)
  const { id } = res.json<{ id: string }>()
  const ttl = await app.redis.ttl(app.store.keys.message(id))
  t.ok(ttl > 10 * 24 * 3600, `the record outlives its sendAt (${ttl} s)`)
  t.ok(ttl <= 11 * 24 * 3600)
  t.ok((await app.redis.ttl(app.store.keys.byRecipient(DEFAULT_TENANT, '41793026727', shardOf(id)))) >= ttl, 'so does its recipient index')
  t.equal(
    await app.store.trimIndexes(DEFAULT_TENANT, shardOf(id), new Date(Date.now() + 2 * 24 * 3600_000)),
    0,
    'a trim past the retention keeps its index entries',
  )
  t.equal((await app.store.search({ tenant: DEFAULT_TENANT, to: '41793026727', limit: 10 })).messages.length, 1)
})
