import { DEFAULT_TENANT } from '../../src/tenants.js'
import { Writable } from 'node:stream'
import type { Job } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import { newMessageId } from '../../src/accept-messages.js'
import { loggerOptions } from '../../src/logger.js'
import type { DlrJob } from '../../src/queues.js'
import { connectOrExplain, createRedis } from '../../src/redis.js'
import { MessageStore } from '../../src/store/message-store.js'
import { makeDlrProcessor, type ReportResult } from '../../workers/dlr.js'
import { cleanup, countWrites, testConfig } from '../helpers/index.js'
import { sendAccepted, STATUSES, v2Report, v3Report } from '../helpers/reports.js'

const config = testConfig('dlr-worker')
const redis = createRedis(config, 'worker')
await connectOrExplain(redis, config)
const store = new MessageStore(redis, { prefix: config.KEY_PREFIX, ttlDays: 1, partitions: config.QUEUE_PARTITIONS })
t.teardown(async () => {
  redis.disconnect()
  await cleanup(config.KEY_PREFIX)
})

const silent = pino({ level: 'silent' })
const apply = makeDlrProcessor({ store, log: silent })
let jobs = 0
const job = (results: unknown[]) => ({ id: String(++jobs), data: { body: JSON.stringify({ results }) } }) as Job<DlrJob>
const create = async (n = 1) => {
  const ids = Array.from({ length: n }, () => newMessageId())
  await store.create(
    ids.map((id) => ({ id, tenant: DEFAULT_TENANT, to: '41793026727', from: 'InfoSMS', text: 'secret text', encoding: 'GSM-7' as const, segments: 1 })),
  )
  return ids
}
const none = { applied: 0, duplicate: 0, ignored: 0, unmatched: 0, invalid: 0 }

t.test('reports one by one follow the transition rules: higher ranks apply, duplicates and lower ranks change nothing', async (t) => {
  const [id] = (await create()) as [string]
  const delivered = v3Report(id)
  const steps: [unknown, ReportResult | 'unknown'][] = [
    [v3Report(id, STATUSES.PENDING_ENROUTE), 'applied'],
    [v3Report(id, STATUSES.DELIVERED_TO_OPERATOR), 'applied'],
    [delivered, 'applied'],
    [delivered, 'duplicate'],
    [{ ...delivered, price: { pricePerMessage: 0.02, currency: 'EUR' } }, 'duplicate'], // same fingerprint
    [v3Report(id, STATUSES.PENDING_ACCEPTED, { doneAt: 'later' }), 'ignored'], // late PENDING
    [v3Report(id, STATUSES.UNDELIVERABLE_NOT_DELIVERED), 'ignored'], // a second final
    [v3Report(id, STATUSES.DELIVERED_TO_HANDSET, { doneAt: 'again' }), 'ignored'], // equal rank
    [{ messageId: id, status: { groupId: 9, id: 1 } }, 'ignored'], // unknown group
    [{ messageId: id }, 'invalid'],
  ]
  for (const [report, expected] of steps) {
    t.same(await apply(job([report])), { ...none, [expected]: 1 }, JSON.stringify(report).slice(0, 80))
  }
  const m = (await store.get(id))!
  t.equal(m.status, 'DELIVERED')
  t.ok(m.final)
  t.match(m.events, [
    { seq: 1, status: 'QUEUED', source: 'api' },
    { seq: 2, status: 'PENDING', source: 'dlr', infobipStatus: 'PENDING_ENROUTE' },
    { seq: 3, status: 'SENT', source: 'dlr', infobipStatus: 'DELIVERED_TO_OPERATOR' },
    { seq: 4, status: 'DELIVERED', source: 'dlr', infobipStatus: 'DELIVERED_TO_HANDSET' },
  ])
  t.equal(m.events.length, 4)
  const { bulkId, messageId, status, error, price, sentAt, doneAt, messageCount, mccMnc } = delivered
  t.same(m.infobip, { messageId, bulkId, status, error, price, sentAt, doneAt, messageCount, mccMnc }, 'infobip.* is the report that set the status')
})

t.test("a report that arrives before the send worker's answer wins", async (t) => {
  const [id] = (await create()) as [string]
  t.same(await apply(job([v2Report(id, STATUSES.EXPIRED_EXPIRED)])), { ...none, applied: 1 })
  // What the send worker records when Infobip's answer comes in afterwards.
  const [late] = await store.transition([sendAccepted(id)])
  t.same(late, { result: 'ignored', current: 'EXPIRED' })
  const m = (await store.get(id))!
  t.equal(m.status, 'EXPIRED')
  t.same(
    m.events.map((e) => e.status),
    ['QUEUED', 'EXPIRED'],
  )
  t.equal(m.infobip!.status && (m.infobip!.status as { name: string }).name, 'EXPIRED_EXPIRED')
})

t.test('unknown messageIds: counted, kept in the capped list, logged without number or text', async (t) => {
  let logs = ''
  const stream = new Writable({ write: (chunk, _enc, done) => ((logs += chunk), done()) })
  const counted: Partial<Record<ReportResult, number>> = {}
  const processor = makeDlrProcessor({ store, log: pino(loggerOptions('info'), stream), onResult: (r, n) => (counted[r] = (counted[r] ?? 0) + n) })
  const [known] = (await create()) as [string]
  const strangers = Array.from({ length: 7 }, (_, i) =>
    v3Report(`unknown-${i}`, STATUSES.DELIVERED_TO_HANDSET, { to: `4179302${String(i).padStart(4, '0')}`, text: 'secret text' }),
  )
  t.same(await processor(job([...strangers, v3Report(known)])), { ...none, applied: 1, unmatched: 7 })
  t.same(counted, { applied: 1, unmatched: 7 })

  const kept = (await redis.lrange(store.keys.unmatched(), 0, -1)).map((r) => JSON.parse(r))
  t.same(
    kept
      .slice(0, 7)
      .map((r) => r.messageId)
      .sort(),
    strangers.map((r) => r.messageId).sort(),
    'kept for inspection',
  )
  t.same(
    kept
      .slice(0, 7)
      .map((r) => r.to as string)
      .sort(),
    strangers.map((_, i) => `*******${String(i).padStart(4, '0')}`),
    'with their numbers masked to the last four digits',
  )
  t.match(logs, /"msg":"delivery reports for unknown messages"/)
  t.match(logs, /"count":7/)
  t.match(logs, /"to":"\*\*\*\*\*\*\*0003"/, 'numbers are masked to their last four digits')
  t.notOk(/4179302000\d/.test(logs), 'no full number')
  t.notOk(logs.includes('secret text'), 'no text')
})

t.test('a batch costs the same few round trips whatever its size', async (t) => {
  const writes = countWrites(t, redis)

  const roundTrips = async (n: number) => {
    const ids = await create(n)
    // Known, duplicated and unknown messages alike, so that every path of the processor runs.
    const results = [...ids.map((id) => v3Report(id)), ...ids.map((id) => v3Report(id)), v3Report('nobody')]
    writes.reset()
    await apply(job(results))
    return writes.count
  }
  const small = await roundTrips(2)
  const large = await roundTrips(1000)
  t.equal(large, small, `${large} writes to Redis for 2,001 reports, as for 5`)
  t.ok(large <= 2, 'one pipeline of transitions, one MULTI for the unmatched list')
})

t.test('applying a job again (a retry) changes nothing', async (t) => {
  const ids = await create(50)
  const results = ids.flatMap((id) => [v3Report(id, STATUSES.DELIVERED_TO_OPERATOR), v3Report(id, STATUSES.REJECTED_NETWORK)])
  t.same(await apply(job(results)), { ...none, applied: 100 })
  const before = await store.getMany(ids)
  t.same(await apply(job(results)), { ...none, duplicate: 100 })
  t.same(await store.getMany(ids), before)
})

t.test('an empty batch or one with nothing valid touches nothing', async (t) => {
  t.same(await apply(job([])), none)
  t.same(await apply(job([null, 1, {}])), { ...none, invalid: 3 })
})
