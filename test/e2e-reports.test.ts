import t from 'tap'
import type { Message } from '../src/domain/message.js'
import { AUTH, startSystem, waitFor } from './helpers/index.js'

/**
 * The whole path with nothing faked: POST /messages → send worker → simulator → reports POSTed to the
 * API's /infobip-dlr over HTTP → dlr job → dlr worker → GET /messages/:id.
 */
const OUTCOMES = [
  // number, final status, the dlr events after PENDING, reports the simulator POSTs
  { to: '+41793020001', status: 'UNDELIVERABLE', dlr: [['UNDELIVERABLE', 'UNDELIVERABLE_NOT_DELIVERED']], posts: 1 },
  { to: '+41793020002', status: 'EXPIRED', dlr: [['EXPIRED', 'EXPIRED_EXPIRED']], posts: 1 },
  { to: '+41793020003', status: 'REJECTED', dlr: [['REJECTED', 'REJECTED_NETWORK']], posts: 1 },
  { to: '+41793020007', status: 'DELIVERED', dlr: [['DELIVERED', 'DELIVERED_TO_HANDSET']], posts: 3 },
  { to: '+41793020008', status: 'DELIVERED', dlr: [['DELIVERED', 'DELIVERED_TO_HANDSET']], posts: 2 },
  {
    to: '+41793020010',
    status: 'DELIVERED',
    dlr: [
      ['SENT', 'DELIVERED_TO_OPERATOR'],
      ['DELIVERED', 'DELIVERED_TO_HANDSET'],
    ],
    posts: 2,
  },
  { to: '+41793026727', status: 'DELIVERED', dlr: [['DELIVERED', 'DELIVERED_TO_HANDSET']], posts: 1 },
] as const

for (const api of ['v3', 'v2'] as const) {
  t.test(`every outcome reaches its final status with the right events (${api})`, async (t) => {
    // 0008 and 0010 send two reports, in two POSTs. Infobip gives no order across POSTs, and neither do
    // we: a starved event loop may read two requests in either order. 400 ms apart and with one dlr
    // consumer, they are applied in the order sent; any other order is test/workers/dlr-concurrency.test.ts.
    const { sim, app } = await startSystem(
      t,
      'e2e-dlr',
      { INFOBIP_API: api, SIM_DLR_DELAY_MS: 400, DLR_CONCURRENCY: 1, WORKER_QUEUES: 'send,dlr' },
      { SIM_DLR_DELAY_MS: 400 },
    )
    const dlrQueue = app.queues.dlr

    const ids = await Promise.all(
      OUTCOMES.map(async ({ to }) => {
        const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to, text: 'hello' } })
        t.equal(res.statusCode, 202, to)
        return res.json().id as string
      }),
    )
    // Done when the simulator has had every report acknowledged and the dlr queue has applied them.
    await waitFor(
      async () => {
        const posted = await Promise.all(
          ids.map(async (id) => ((await (await fetch(`${sim.url}/_sim/messages/${id}`)).json()) as { reportsPosted: number }).reportsPosted),
        )
        return posted.every((n, i) => n === OUTCOMES[i]!.posts)
      },
      30_000,
      'every report to be posted',
    )
    await waitFor(
      async () => Object.values(await dlrQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).every((n) => n === 0),
      30_000,
      'the dlr queue to drain',
    )
    t.equal((await dlrQueue.getJobCounts('failed')).failed, 0, 'no dlr job failed')

    for (const [i, outcome] of OUTCOMES.entries()) {
      const res = await app.inject({ url: `/messages/${ids[i]}`, headers: AUTH })
      const m = res.json<Message>()
      t.equal(m.status, outcome.status, `${outcome.to}: ${outcome.status}`)
      t.ok(m.final)
      // The send worker's PENDING comes second unless a report beat it there (docs/statuses.md#transition-rules).
      const fromSend = m.events.filter((e) => e.source === 'send')
      t.ok(
        fromSend.length === 0 || (m.events[1]!.source === 'send' && m.events[1]!.status === 'PENDING' && fromSend.length === 1),
        `${outcome.to}: at most one PENDING from send`,
      )
      t.same(
        m.events.filter((e) => e.source !== 'send').map((e) => [e.status, e.source, e.infobipStatus ?? null]),
        [['QUEUED', 'api', null], ...outcome.dlr.map(([status, name]) => [status, 'dlr', name])],
        `${outcome.to}: events`,
      )
      t.same(
        m.events.map((e) => e.seq),
        m.events.map((_, j) => j + 1),
        `${outcome.to}: seq 1..n`,
      )
      t.match(m.infobip, {
        messageId: ids[i],
        status: { name: outcome.dlr.at(-1)![1] },
        price: { currency: 'EUR' },
        doneAt: String,
        sentAt: String,
        messageCount: 1,
        mccMnc: '22801',
      })
    }
    const undeliverable = (await app.store.get(ids[0]!))!
    t.match(undeliverable.infobip, { error: { id: 27, name: 'EC_ABSENT_SUBSCRIBER' } })
    t.equal(await app.redis.llen(app.store.keys.unmatched()), 0, 'no report went unmatched')
  })
}
