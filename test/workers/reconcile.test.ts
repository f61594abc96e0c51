import { pino } from 'pino'
import t from 'tap'
import type { Config } from '../../src/config.js'
import { InfobipClient } from '../../src/infobip/client.js'
import { makeReconcileProcessor } from '../../workers/reconcile.js'
import { startWorkers } from '../../workers/start.js'
import { makeApplyTransitions } from '../../workers/transitions.js'
import { AUTH, buildTestApp, startSimulator, testConfig, waitFor } from '../helpers/index.js'

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
  t.equal(await app.redis.zscore(app.store.keys.open(), id), null, 'no longer open')
})

t.test('the reconciler looks up only messages due, in calls of ≤ 2,048 characters, and counts stale ones', async (t) => {
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
  const ids: string[] = []
  for (let i = 0; i < 130; i++) {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793020009', text: `m${i}` } })
    ids.push(res.json().id)
  }
  // Submitted 20 minutes ago (due), 1 minute ago (not yet), 49 hours ago (stale: Infobip forgot).
  const now = Date.now()
  const open = app.store.keys.open()
  for (const [i, id] of ids.entries()) await app.redis.zadd(open, i < 120 ? now - 20 * 60_000 : i < 125 ? now - 60_000 : now - 49 * 3600_000, id)
  const reconcile = makeReconcileProcessor({
    store: app.store,
    infobip,
    log: pino({ level: 'silent' }),
    afterSeconds: 900,
    ttlDays: 30,
    apply: makeApplyTransitions({ store: app.store, callbackQueue: app.queues.callback, callbackOptions: {} }),
    sleep: async () => {},
  })
  const result = await reconcile()
  t.same(result, { looked: 120, applied: 0, stale: 5 }, 'the simulator never saw these messages: nothing to apply')
  t.equal(urls.length, 2, '120 ids in two calls')
  t.ok(urls.every((u) => u.length <= 2048))
  t.equal(await app.redis.get(app.store.keys.stale()), '5')
})
