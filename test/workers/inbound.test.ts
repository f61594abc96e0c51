import type { Job } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import { keywords } from '../../src/domain/inbound.js'
import type { InboundJob } from '../../src/queues.js'
import { makeInboundProcessor } from '../../workers/inbound.js'
import { AUTH, DLR_TOKEN, startSystem, waitFor, writeTenantsFile } from '../helpers/index.js'

const KEY_A = 'sk_acme_live_0123456789abcdef'
const KEY_B = 'sk_beta_live_0123456789abcdef'
const A = { authorization: `Bearer ${KEY_A}` }
const B = { authorization: `Bearer ${KEY_B}` }
/** acme owns 41790000000 as an inbound number, beta 41790000099 as a numeric sender; `default` (API_KEYS) owns nothing. */
const ACME_NUMBER = '41790000000'
const BETA_NUMBER = '41790000099'
const SHARED_NUMBER = '41780000000'

const { app, sim, apiUrl } = await startSystem(t, 'inbound', {
  TENANTS_FILE: writeTenantsFile(t, {
    acme: { apiKeys: [KEY_A], inboundNumbers: [ACME_NUMBER] },
    beta: { apiKeys: [KEY_B], defaultSender: 'BETA', allowedSenders: ['BETA', `+${BETA_NUMBER}`] },
  }),
})

/** An inbound SMS through the simulator, as Infobip would post it; resolves once the worker has handled it. */
async function reply(from: string, to: string, text: string, messageId?: string): Promise<string> {
  const res = await sim.app.inject({
    method: 'POST',
    url: '/_sim/inbound',
    payload: { from, to, text, messageId, url: `${apiUrl}/infobip-inbound?token=${DLR_TOKEN}` },
  })
  const answer = res.json<{ messageId: string; serviceStatus: number }>()
  if (res.statusCode !== 200 || answer.serviceStatus !== 200) throw new Error(`the service did not store the inbound SMS: ${res.body}`)
  await waitFor(
    async () => {
      const counts = await app.queues.inbound.getJobCounts('waiting', 'active', 'delayed', 'prioritized')
      return Object.values(counts).every((n) => n === 0)
    },
    10_000,
    'the inbound job processed',
  )
  return answer.messageId
}

const suppression = async (to: string, headers = AUTH) => {
  const res = await app.inject({ url: `/suppressions/${to}`, headers })
  return res.statusCode === 200 ? res.json<{ to: string; source: string; reason: string }>() : res.statusCode
}

const send = async (to: string, headers = AUTH) => {
  const res = await app.inject({ method: 'POST', url: '/messages', headers, payload: { to, text: 'Still there?' } })
  if (res.statusCode !== 202) throw new Error(`POST /messages answered ${res.body}`)
  return res.json<{ id: string; status: string; error?: { code: string } }>()
}

const inboundCounts = async () => {
  const text = (await app.inject({ url: '/metrics' })).body
  const value = (action: string) => Number(new RegExp(`^sms_inbound_total\\{action="${action}"\\} (\\S+)$`, 'm').exec(text)?.[1])
  return { opt_out: value('opt_out'), opt_in: value('opt_in'), none: value('none') }
}

t.test(
  'STOP suppresses the sender: the next message ends REJECTED (SUPPRESSED) and never reaches Infobip; START lifts it; a repeat does nothing',
  async (t) => {
    const from = '41793021111'
    const stop = await reply(`+${from}`, SHARED_NUMBER, 'STOP')
    t.match(await suppression(from), { to: from, source: 'inbound', reason: 'inbound "STOP"' })

    const message = await send('+41 79 302 11 11')
    t.match(message, { status: 'REJECTED', error: { code: 'SUPPRESSED' } })
    t.match((await app.inject({ url: `/messages/${message.id}`, headers: AUTH })).json(), { status: 'REJECTED', final: true, error: { code: 'SUPPRESSED' } })
    t.equal((await sim.app.inject({ url: `/_sim/messages/${message.id}` })).statusCode, 404, 'Infobip never saw it')

    await reply(from, SHARED_NUMBER, 'start')
    t.equal(await suppression(from), 404, 'START takes it off')
    await reply(from, SHARED_NUMBER, 'STOP', stop)
    t.equal(await suppression(from), 404, 'the same STOP posted again has no further effect')

    await reply(from, SHARED_NUMBER, 'Hello, what is this about?')
    t.equal(await suppression(from), 404, 'any other text does nothing')
    const delivered = await send(from)
    await waitFor(async () => (await app.store.get(delivered.id))?.final, 10_000, 'the message delivered')
    t.equal((await app.store.get(delivered.id))!.status, 'DELIVERED', 'messages to it are sent again')

    // Workers add their counts to Redis every second.
    await waitFor(async () => JSON.stringify(await inboundCounts()) === JSON.stringify({ opt_out: 1, opt_in: 1, none: 1 }), 10_000, 'the counts').catch(
      () => {},
    )
    t.same(await inboundCounts(), { opt_out: 1, opt_in: 1, none: 1 }, 'sms_inbound_total: the repeat counts nothing')
  },
)

t.test('the tenant that owns the number sent to is the one whose list changes; an unowned number changes every list', async (t) => {
  const toAcme = '41793022222'
  await reply(toAcme, ACME_NUMBER, 'Stop.')
  t.match(await suppression(toAcme, A), { source: 'inbound' }, 'acme: its inboundNumbers')
  t.equal(await suppression(toAcme, B), 404)
  t.equal(await suppression(toAcme), 404)
  t.match(await send(toAcme, A), { status: 'REJECTED', error: { code: 'SUPPRESSED' } })
  t.equal((await send(toAcme)).status, 'QUEUED', 'another tenant still sends to it')

  const toBeta = '41793023333'
  await reply(toBeta, BETA_NUMBER, 'UNSUBSCRIBE me')
  t.match(await suppression(toBeta, B), { source: 'inbound', reason: 'inbound "UNSUBSCRIBE"' }, 'beta: its numeric allowedSenders')
  t.equal(await suppression(toBeta, A), 404)
  t.equal(await suppression(toBeta), 404)

  const toAll = '41793024444'
  await reply(toAll, SHARED_NUMBER, 'QUIT')
  for (const headers of [AUTH, A, B]) t.match(await suppression(toAll, headers), { source: 'inbound' }, headers.authorization)
  await reply(toAll, ACME_NUMBER, 'UNSTOP')
  t.equal(await suppression(toAll, A), 404, 'an opt-in is routed the same way')
  t.match(await suppression(toAll, B), { source: 'inbound' })
})

t.test('the simulator posts MO_JSON_2 as Infobip does, and answers 502 when the service cannot be reached', async (t) => {
  const posted = await sim.app.inject({
    method: 'POST',
    url: '/_sim/inbound',
    payload: { from: '41793026000', to: SHARED_NUMBER, text: 'stop please', url: `${apiUrl}/infobip-inbound` },
  })
  t.match(posted.json(), {
    messageId: String,
    serviceStatus: 401,
    sent: {
      results: [
        {
          from: '41793026000',
          to: SHARED_NUMBER,
          text: 'stop please',
          keyword: 'STOP',
          cleanText: 'please',
          smsCount: 1,
          callbackData: null,
          receivedAt: /\+0000$/,
        },
      ],
      messageCount: 1,
      pendingMessageCount: 0,
    },
  })
  const unreachable = await sim.app.inject({
    method: 'POST',
    url: '/_sim/inbound',
    payload: { from: '41793026000', to: SHARED_NUMBER, text: 'STOP', url: 'http://127.0.0.1:9/x?token=secret-token-123' },
  })
  t.equal(unreachable.statusCode, 502)
  t.notOk(unreachable.body.includes('secret-token-123'))
})

t.test('applied before it is marked: a crash in between applies it again on the retry, and counts it once', async (t) => {
  const from = '41793025555'
  const job = {
    id: 'crash-1',
    data: { body: JSON.stringify({ results: [{ messageId: 'crash-1', from, to: SHARED_NUMBER, text: 'STOP' }] }) },
  } as Job<InboundJob>
  let crash = true
  const store = new Proxy(app.store, {
    get(target, name, receiver) {
      if (name === 'firstInbound' && crash) {
        crash = false
        return async () => {
          throw new Error('Connection is closed.')
        }
      }
      const value = Reflect.get(target, name, receiver) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  const counted: string[] = []
  const processor = makeInboundProcessor({
    store,
    log: pino({ level: 'silent' }),
    keywords: keywords(['STOP'], ['START']),
    tenants: app.tenants.all,
    onAction: (action) => counted.push(action),
  })
  await t.rejects(processor(job), /Connection is closed/)
  t.match(await suppression(from), { source: 'inbound' }, 'the opt-out is not lost')
  t.same(counted, [], 'not counted before it is marked')
  t.match(await processor(job), { opt_out: 1, repeated: 0 }, 'the retry applies it again')
  t.match(await processor(job), { opt_out: 0, repeated: 1 }, 'then it is a repeat')
  t.same(counted, ['opt_out'])
})
