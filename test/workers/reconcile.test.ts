import { DEFAULT_TENANT } from '../../src/tenants.js'
import { pino } from 'pino'
import t from 'tap'
import type { Config } from '../../src/config.js'
import type { Submission } from '../../src/domain/message.js'
import { InfobipClient } from '../../src/infobip/client.js'
import { makeReconcileProcessor, MAX_CALLS_PER_RUN } from '../../workers/reconcile.js'
import { startWorkers } from '../../workers/start.js'
import { makeApplyTransitions } from '../../src/changes.js'
import { AUTH, buildTestApp, startSimulator, testConfig, waitFor } from '../helpers/index.js'
import { inShard, shardOf } from '../../src/shards.js'

t.test('0009 (no report; only the logs know DELIVERED) ends DELIVERED through the scheduled reconciler', async (t) => {
  const sim = await startSimulator(t, testConfig('rec-sim'))
  const config: Config = testConfig('reconcile', { INFOBIP_BASE_URL: sim.url, RECONCILE_INTERVAL_SECONDS: 1, RECONCILE_AFTER_SECONDS: 1 })
  const app = await buildTestApp(t, config)
  const workers = await startWorkers(config, pino({ level: 'silent' }))
  t.teardown(() => workers.close())
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793020009', text: 'quiet' } })
  const id = res.json().id as string
  const m = await waitFor(
    async () => {
      const m = await app.store.get(id)
      return m?.status === 'DELIVERED' ? m : undefined
    },
    20_000,
    'DELIVERED',
  )
  t.match(m.events, [
    { status: 'QUEUED' },
    { status: 'PENDING', source: 'send' },
    { status: 'DELIVERED', source: 'reconcile', infobipStatus: 'DELIVERED_TO_HANDSET' },
  ])
  t.match(m.infobip, { messageId: id, status: { groupId: 3, id: 5 } })
  t.equal(await app.redis.zscore(app.store.keys.open(shardOf(id)), id), null, 'no longer open')
})

/** The reconciler of `app`'s store, run by hand: due after 15 minutes, records kept 30 days. */
const reconcilerOf = (app: Awaited<ReturnType<typeof buildTestApp>>, infobip: InfobipClient) =>
  makeReconcileProcessor({
    store: app.store,
    infobip,
    log: pino({ level: 'silent' }),
    afterSeconds: 900,
    tenants: [DEFAULT_TENANT],
    ttlDays: 30,
    apply: makeApplyTransitions({ store: app.store, callbackQueue: app.queues.callback, callbackOptions: {} }),
  })

t.test('the reconciler looks up only messages due, in calls of ≤ 2,048 characters, and counts the PENDING ones past the logs window as stale', async (t) => {
  const sim = await startSimulator(t, testConfig('rec-sim2'))
  const config: Config = testConfig('reconcile2', { INFOBIP_BASE_URL: sim.url })
  const app = await buildTestApp(t, config)
  const infobip = new InfobipClient(config)
  t.teardown(() => infobip.close())
  const urls: string[] = []
  const logs = infobip.logs.bind(infobip)
  infobip.logs = async (ids) => {
    urls.push(ids.join(','))
    return logs(ids)
  }
  // One batch: its messages share a shard, whose work list the reconciler's run walks.
  const batch = Array.from({ length: 130 }, (_, i) => ({ to: '+41793020009', text: `m${i}` }))
  const res = await app.inject({ method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages: batch } })
  const ids = res.json<{ messages: { id: string }[] }>().messages.map((m) => m.id)
  const shard = shardOf(ids[0]!)
  // Submitted 20 minutes ago (due), 1 minute ago (not yet), 49 hours ago (stale: Infobip forgot).
  const now = Date.now()
  const open = app.store.keys.open(shard)
  for (const [i, id] of ids.entries()) await app.redis.zadd(open, i < 120 ? now - 20 * 60_000 : i < 125 ? now - 60_000 : now - 49 * 3600_000, id)
  // Of the five Infobip forgot, four were accepted and never heard of again; one reached the operator.
  for (const [i, id] of ids.entries()) if (i >= 125) await app.redis.hset(app.store.keys.message(id), 'status', i < 129 ? 'PENDING' : 'SENT')
  const reconcile = reconcilerOf(app, infobip)
  const result = await reconcile(shard)
  t.same(result, { looked: 120, applied: 0, stale: 4 }, 'the simulator never saw these messages: nothing to apply')
  t.equal(urls.length, 2, '120 ids in two calls')
  t.ok(urls.every((u) => u.length <= 2048))
  t.equal(await app.redis.get(app.store.keys.staleCount(shard)), '4')
  t.equal(await app.redis.zcard(open), 125, 'the five past the window left the work list')
  t.equal((await app.store.get(ids[129]!))?.status, 'SENT', 'a SENT message stays SENT')
})

t.test('more open messages past the logs window than one run can look up keep no newer message from being reconciled', async (t) => {
  const sim = await startSimulator(t, testConfig('rec-sim3'))
  const config: Config = testConfig('reconcile3', { INFOBIP_BASE_URL: sim.url })
  const app = await buildTestApp(t, config)
  const infobip = new InfobipClient(config)
  t.teardown(() => infobip.close())
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793020009', text: 'quiet' } })
  const id = res.json().id as string
  // Submitted to the simulator 20 minutes ago, as far as the reconciler can tell.
  const claimed = await app.store.claim([id], { owner: 'test', busyMs: 1 })
  t.equal(claimed[0]!.result, 'ok')
  const submission = (claimed[0] as { submission: Submission }).submission
  t.equal((await infobip.submit([submission])).kind, 'accepted')
  const shard = shardOf(id)
  const open = app.store.keys.open(shard)
  await app.redis.zadd(open, Date.now() - 20 * 60_000, id)
  // One more than a run's capacity, all past Infobip's 48 hours, older than the message.
  const capacity = 60 * MAX_CALLS_PER_RUN
  const old = Date.now() - 49 * 3600_000
  for (let i = 0; i <= capacity; i += 1000) {
    const members = Array.from({ length: Math.min(1000, capacity + 1 - i) }, (_, j) => [
      old + i + j,
      inShard(`msg_OLD${String(i + j).padStart(23, '0')}`, shard),
    ]).flat()
    await app.redis.zadd(open, ...members)
  }
  const reconcile = reconcilerOf(app, infobip)
  const result = await reconcile(shard)
  t.equal(result.looked, 1, 'only the message that can still be learnt about')
  t.equal((await app.store.get(id))?.status, 'DELIVERED')
  t.equal(result.stale, 0, 'the old ones had no record left: none is PENDING')
})
