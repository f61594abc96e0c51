import { once } from 'node:events'
import { createServer } from 'node:http'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { buildApp } from '../src/app.js'
import type { Config } from '../src/config.js'
import { SharedMetrics } from '../src/metrics.js'
import { createRedis } from '../src/redis.js'
import { makeKeys } from '../src/store/keys.js'
import type { Message } from '../src/domain/message.js'
import { startWorkers } from '../workers/start.js'
import { AUTH, buildTestApp, cleanup, REDIS_URL, startSystem, testConfig, waitFor, TEST_REDIS } from './helpers/index.js'

const silent = pino({ level: 'silent' })

/** Prometheus text → `name{a="x",b="y"}` (labels sorted) → value. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) continue
    const labels = [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort()
    samples.set(labels.length > 0 ? `${match[1]}{${labels.join(',')}}` : match[1]!, Number(match[3]))
  }
  return samples
}

/** A second API process: the one that serves the scrape has counted nothing itself. */
async function secondApp(t: Test, config: Config) {
  const app = await buildApp(config, { logger: false })
  t.teardown(() => app.close())
  return async () => {
    const res = await app.inject({ url: '/metrics' })
    t.equal(res.statusCode, 200)
    return { text: res.body, samples: parse(res.body), contentType: res.headers['content-type'] }
  }
}

/** Polls the scrape until `expected` is all there (flushes happen every second), then asserts it. */
async function expectSamples(t: Test, scrape: () => Promise<{ samples: Map<string, number> }>, expected: Record<string, number>, what: string) {
  let samples = new Map<string, number>()
  const pick = () => Object.fromEntries(Object.keys(expected).map((k) => [k, samples.get(k)]))
  await waitFor(
    async () => {
      samples = (await scrape()).samples
      return Object.entries(expected).every(([k, v]) => samples.get(k) === v)
    },
    10_000,
    what,
  ).catch(() => {})
  t.same(pick(), expected, what)
  return samples
}

t.test('a scrape of another API process shows what the API and the workers counted', async (t) => {
  const { sim, app, config } = await startSystem(t, 'metrics', { WORKER_QUEUES: 'send,dlr' }, { SIM_DLR_DELAY_MS: 50 })
  const dlrQueue = app.queues.dlr
  const scrape = await secondApp(t, config)

  // One request of 7 (one Infobip request), and three alone for their refusals.
  const plain = ['0001', '0002', '0003', '0007', '0008', '0010', '6727'].map((last4) => ({ to: `+4179302${last4}`, text: 'hello' }))
  const batch = await app.inject({ method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages: plain } })
  t.equal(batch.statusCode, 202)
  const ids = (batch.json().messages as Message[]).map((m) => m.id)
  for (const last4 of ['0004', '0005', '0006']) {
    const res = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { ...AUTH, 'idempotency-key': `k-${last4}` },
      payload: { to: `+4179302${last4}`, text: 'hi' },
    })
    t.equal(res.statusCode, 202)
    ids.push(res.json().id as string)
  }
  const replay = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { ...AUTH, 'idempotency-key': 'k-0004' },
    payload: { to: '+41793020004', text: 'hi' },
  })
  t.equal(replay.statusCode, 200, 'a replay creates nothing')

  // Done when every message is final, Infobip has posted every report and the dlr queue is empty.
  const messages = await waitFor(
    async () => {
      const all = (await app.store.getMany(ids)) as Message[]
      return all.every((m) => m.final) ? all : undefined
    },
    20_000,
    'every message to be final',
  )
  const posted = [1, 1, 1, 3, 2, 2, 1, 1, 1, 0] // in the order of `ids`
  await waitFor(
    async () => {
      const views = await Promise.all(
        ids.map(async (id) => ((await (await fetch(`${sim.url}/_sim/messages/${id}`)).json()) as { reportsPosted: number }).reportsPosted),
      )
      return views.every((n, i) => n === posted[i])
    },
    15_000,
    'every report to be posted',
  )
  await waitFor(
    async () => Object.values(await dlrQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).every((n) => n === 0),
    15_000,
    'the dlr queue to drain',
  )
  const final = (await app.store.getMany(ids)) as Message[]
  t.same(
    final.map((m) => m.status),
    messages.map((m) => m.status),
    'no status changed after the last report',
  )

  const events = final.flatMap((m) => m.events)
  const byStatus = (status: string) => events.filter((e) => e.status === status).length
  const applied = events.filter((e) => e.source === 'dlr').length
  const reports = posted.reduce((a, b) => a + b, 0)
  const fromReports = final.filter((m) => m.events.at(-1)!.source === 'dlr').length
  t.equal(fromReports, 9, 'all but 0006 (FAILED by the send worker) ended by a report')

  const samples = await expectSamples(
    t,
    scrape,
    {
      'sms_messages_created_total{tenant="default"}': 10,
      ...Object.fromEntries(
        ['QUEUED', 'PENDING', 'SENT', 'DELIVERED', 'UNDELIVERABLE', 'EXPIRED', 'REJECTED', 'FAILED'].map((s) => [
          `sms_status_transitions_total{status="${s}",tenant="default"}`,
          byStatus(s),
        ]),
      ),
      // 7 in one request; 0004: 500, 500, accepted; 0005: 429, accepted; 0006: 400.
      'sms_infobip_submissions_total{outcome="accepted"}': 9,
      'sms_infobip_submissions_total{outcome="rejected"}': 0,
      'sms_infobip_submissions_total{outcome="http_4xx"}': 1,
      'sms_infobip_submissions_total{outcome="http_429"}': 1,
      'sms_infobip_submissions_total{outcome="http_5xx"}': 2,
      'sms_infobip_submissions_total{outcome="network"}': 0,
      // 0007 is posted three times (two duplicates); 0008's late PENDING is ignored.
      'sms_reports_total{result="applied"}': applied,
      'sms_reports_total{result="duplicate"}': 2,
      'sms_reports_total{result="ignored"}': reports - applied - 2,
      'sms_reports_total{result="unmatched"}': 0,
      'sms_reports_total{result="invalid"}': 0,
      sms_submit_to_final_seconds_count: fromReports,
      'sms_submit_to_final_seconds_bucket{le="+Inf"}': fromReports,
      sms_messages_stale: 0,
    },
    'shared counters',
  )
  t.equal(byStatus('QUEUED'), 10, 'one QUEUED per created message')
  t.equal(applied, 10, 'every report applied but the duplicates and the late PENDING')
  t.ok(samples.get('sms_submit_to_final_seconds_sum')! > 0, 'latencies summed')
  t.ok(samples.get('sms_submit_to_final_seconds_bucket{le="0.5"}')! <= fromReports, 'buckets are cumulative')
  for (const queue of ['send', 'dlr', 'callback']) {
    for (const state of ['waiting', 'active', 'delayed', 'failed'])
      t.ok(samples.has(`sms_queue_jobs{partition="0",queue="${queue}",state="${state}"}`), `${queue} ${state} depth`)
  }
  t.equal(samples.get('sms_queue_jobs{partition="0",queue="send",state="failed"}'), 0)
  t.equal(samples.get('sms_queue_jobs{partition="0",queue="dlr",state="waiting"}'), 0)

  const { text, contentType } = await scrape()
  t.match(contentType, /^text\/plain/)
  for (const [name, type] of [
    ['sms_messages_created_total', 'counter'],
    ['sms_infobip_submissions_total', 'counter'],
    ['sms_reports_total', 'counter'],
    ['sms_status_transitions_total', 'counter'],
    ['sms_submit_to_final_seconds', 'histogram'],
    ['sms_queue_jobs', 'gauge'],
    ['sms_messages_stale', 'gauge'],
    ['http_request_duration_seconds', 'histogram'],
  ]) {
    t.ok(text.includes(`# TYPE ${name} ${type}\n`), `${name} is a ${type}`)
  }
  t.ok(text.includes('process_cpu_user_seconds_total'), 'default process metrics')

  // HTTP latency is per process: the API that served the requests has them, by route pattern.
  const own = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(own.get('http_request_duration_seconds_count{method="POST",route="/messages",status_code="202"}'), 3)
  t.equal(own.get('http_request_duration_seconds_count{method="POST",route="/messages",status_code="200"}'), 1)
  t.equal(own.get('http_request_duration_seconds_count{method="POST",route="/messages/batch",status_code="202"}'), 1)
  t.ok(own.get('http_request_duration_seconds_count{method="POST",route="/infobip-dlr",status_code="200"}')! >= 1, 'reports POSTed over HTTP')
  t.notOk(
    [...samples.keys()].some((k) => k.startsWith('http_request_duration_seconds_count{method="POST"')),
    'not in the other process',
  )

  // The reconciler keeps the number of stale messages in Redis.
  await app.redis.set(makeKeys(config.KEY_PREFIX).staleCount(0), '3')
  t.equal((await scrape()).samples.get('sms_messages_stale'), 3)
})

t.test('a destination refused in Infobip’s answer counts as rejected, the rest as accepted', async (t) => {
  // The simulator never rejects in its send answer: a small Infobip stand-in over real HTTP does.
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      const { messages } = JSON.parse(body) as { messages: { destinations: { to: string; messageId: string }[] }[] }
      const answer = messages.flatMap(({ destinations }) =>
        destinations.map((d) => ({
          messageId: d.messageId,
          destination: d.to,
          status: d.to.endsWith('1111')
            ? { groupId: 5, groupName: 'REJECTED', id: 12, name: 'REJECTED_NOT_ENOUGH_CREDITS' }
            : { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED' },
        })),
      )
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bulkId: 'b1', messages: answer }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const config = testConfig('metrics-rejected', { INFOBIP_BASE_URL: `http://127.0.0.1:${(server.address() as { port: number }).port}` })
  const app = await buildTestApp(t, config)
  const workers = await startWorkers({ ...config, WORKER_QUEUES: 'send' }, silent)
  t.teardown(async () => {
    await workers.close()
    await cleanup(config.KEY_PREFIX)
  })
  const messages = ['+41793021111', '+41793026727', '+41793021111', '+41793025555'].map((to) => ({ to, text: 'hi' }))
  const res = await app.inject({ method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages } })
  t.equal(res.statusCode, 202)
  const scrape = await secondApp(t, config)
  await expectSamples(
    t,
    scrape,
    {
      'sms_infobip_submissions_total{outcome="accepted"}': 2,
      'sms_infobip_submissions_total{outcome="rejected"}': 2,
      'sms_status_transitions_total{status="PENDING",tenant="default"}': 2,
      'sms_status_transitions_total{status="REJECTED",tenant="default"}': 2,
      // A rejection in the answer is the send worker's own outcome, not a report's.
      sms_submit_to_final_seconds_count: 0,
    },
    'one request of 4: 2 accepted, 2 rejected',
  )
})

t.test('SharedMetrics: a failed flush keeps the increments for the next one; close writes the rest', async (t) => {
  const config = testConfig('metrics-flush')
  t.teardown(() => cleanup(config.KEY_PREFIX))
  const warnings: string[] = []
  // Not connected yet, and no offline queue (like the API's connection): every command fails at once.
  const redis = createRedis(REDIS_URL, 'producer')
  t.teardown(() => redis.disconnect())
  const metrics = new SharedMetrics(redis, config.KEY_PREFIX, { warn: (_obj, msg) => warnings.push(msg) }, 60_000)
  metrics.inc('sms_reports_total', { result: 'applied' }, 2)
  metrics.observe('sms_submit_to_final_seconds', {}, 1.5)
  await metrics.flush()
  t.same(warnings, ['could not write metrics to redis; will retry'], 'the failure is logged, not thrown')

  // The failed command started the lazy connection.
  await waitFor(() => redis.status === 'ready', 5000, 'redis to connect')
  metrics.inc('sms_reports_total', { result: 'applied' })
  await metrics.close()
  t.same(await redis.hgetall(makeKeys(config.KEY_PREFIX).metrics()), {
    'sms_reports_total{result="applied"}': '3',
    'sms_submit_to_final_seconds_bucket{le="2.5"}': '1',
    'sms_submit_to_final_seconds_bucket{le="5"}': '1',
    'sms_submit_to_final_seconds_bucket{le="10"}': '1',
    'sms_submit_to_final_seconds_bucket{le="30"}': '1',
    'sms_submit_to_final_seconds_bucket{le="60"}': '1',
    'sms_submit_to_final_seconds_bucket{le="120"}': '1',
    'sms_submit_to_final_seconds_bucket{le="300"}': '1',
    'sms_submit_to_final_seconds_bucket{le="600"}': '1',
    'sms_submit_to_final_seconds_bucket{le="1800"}': '1',
    'sms_submit_to_final_seconds_bucket{le="3600"}': '1',
    'sms_submit_to_final_seconds_bucket{le="14400"}': '1',
    'sms_submit_to_final_seconds_bucket{le="86400"}': '1',
    'sms_submit_to_final_seconds_bucket{le="172800"}': '1',
    'sms_submit_to_final_seconds_bucket{le="+Inf"}': '1',
    sms_submit_to_final_seconds_count: '1',
    sms_submit_to_final_seconds_sum: '1.5',
  })
})

t.test('the API flushes its counts when it closes', async (t) => {
  const config = testConfig('metrics-close')
  const app = await buildTestApp(t, config)
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'hi' } })
  t.equal(res.statusCode, 202)
  await app.close()
  const redis = createRedis(TEST_REDIS, 'worker', { lazyConnect: false })
  t.teardown(() => redis.disconnect())
  t.match(await redis.hgetall(makeKeys(config.KEY_PREFIX).metrics()), {
    'sms_messages_created_total{tenant="default"}': '1',
    'sms_status_transitions_total{status="QUEUED",tenant="default"}': '1',
  })
})

t.test('/metrics is in the OpenAPI document under operations', async (t) => {
  const app = await buildTestApp(t, testConfig('metrics-docs'))
  const doc = (await app.inject({ url: '/docs/json' })).json<{ paths: Record<string, { get?: { tags?: string[] } }> }>()
  t.same(doc.paths['/metrics']?.get?.tags, ['operations'])
})
