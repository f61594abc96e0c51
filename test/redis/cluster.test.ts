import { execFileSync } from 'node:child_process'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { shardOf } from '../../src/shards.js'
import { startWorkers } from '../../workers/start.js'
import { pino } from 'pino'
import { AUTH, buildTestApp, CLUSTER_NODES, keysUnder, startSystem, testConfig, testEnv, waitFor } from '../helpers/index.js'

/**
 * Against the Redis Cluster of `.ci/redis-topologies.sh start` (masters 7000-7002, one replica each):
 * skipped, saying so, when it is not running. REDIS_URL points nowhere: everything goes to the cluster.
 */
const CLUSTER = { REDIS_CLUSTER_NODES: CLUSTER_NODES, QUEUE_PARTITIONS: 3, REDIS_URL: 'redis://127.0.0.1:1' }
const MASTERS = CLUSTER_NODES.split(',').map((node) => node.split(':')[1]!)

const clusterState = (): string | undefined => {
  try {
    return execFileSync('redis-cli', ['-p', MASTERS[0]!, 'CLUSTER', 'INFO'], { encoding: 'utf8', timeout: 2000 }).match(/cluster_state:(\w+)/)?.[1]
  } catch {
    return undefined
  }
}
const keysOn = (port: string, pattern: string): number =>
  Number(execFileSync('redis-cli', ['-p', port, 'EVAL', `return #redis.call('KEYS', ARGV[1])`, '0', pattern], { encoding: 'utf8', timeout: 2000 }).trim())

if (clusterState() !== 'ok') {
  t.plan(0, `the Redis Cluster is not running on ${CLUSTER_NODES} (start it with .ci/redis-topologies.sh start)`)
} else {
  t.test('Cluster mode with 3 partitions: messages spread over the shards and the masters, and every one is delivered', async (t) => {
    const { app, config } = await startSystem(t, 'cluster', { ...CLUSTER, BULL_BOARD_USER: 'ops', BULL_BOARD_PASSWORD: 'board-password-0123' })
    const single = await Promise.all(
      Array.from({ length: 12 }, (_, i) => app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: `one ${i}` } })),
    )
    const batch = await app.inject({
      method: 'POST',
      url: '/messages/batch',
      headers: AUTH,
      payload: { messages: Array.from({ length: 150 }, (_, i) => ({ to: '+41793026727', text: `many ${i}`, reference: 'spread' })) },
    })
    t.ok(
      single.every((r) => r.statusCode === 202),
      'every single message accepted',
    )
    t.equal(batch.statusCode, 202)
    const ids = [...single.map((r) => r.json<{ id: string }>().id), ...batch.json<{ messages: { id: string }[] }>().messages.map((m) => m.id)]
    t.same(new Set(ids.map(shardOf)), new Set([0, 1, 2]), 'the messages are in all three shards')
    t.equal(new Set(batch.json<{ messages: { id: string }[] }>().messages.map((m) => shardOf(m.id))).size, 1, 'a request’s messages share a shard')

    await waitFor(async () => (await app.store.getMany(ids)).every((m) => m?.status === 'DELIVERED'), 30_000, 'every message DELIVERED')
    for (const port of MASTERS) t.ok(keysOn(port, `${config.KEY_PREFIX}:*:msg:*`) > 0, `master ${port} holds message records`)
    const page = await app.inject({ url: '/messages?reference=spread&limit=200', headers: AUTH })
    const found = page.json<{ messages: { id: string }[] }>().messages.map((m) => m.id)
    t.equal(found.length, 150, 'a search visits every shard')
    t.same(found, [...found].sort().reverse(), 'merged newest first')
    t.match((await app.inject({ url: '/ready' })).json(), { status: 'ok', partitions: ['ok', 'ok', 'ok'] })
    const metrics = (await app.inject({ url: '/metrics' })).body
    for (const p of [0, 1, 2])
      t.match(metrics, new RegExp(`sms_queue_jobs\\{queue="send",partition="${p}",state="waiting"\\}`), `partition ${p} in the metrics`)
    const board = await app.inject({
      url: '/admin/queues/api/queues?page=1&jobsPerPage=1',
      headers: { authorization: `Basic ${Buffer.from('ops:board-password-0123').toString('base64')}` },
    })
    const names = board.json<{ queues: { name: string }[] }>().queues.map((q) => q.name)
    for (const queue of ['send', 'dlr', 'callback', 'reconcile', 'inbound'])
      for (const p of [0, 1, 2]) t.ok(names.includes(`p${p}.${queue}`), `the dashboard shows p${p}.${queue}`)
    t.ok((await keysUnder(app.redis, `${config.KEY_PREFIX}:*`)).length > 0)
  })

  t.test('REDIS_MIN_REPLICAS on a cluster: a 202 once the shard’s replica has the write; 503 when it cannot', async (t) => {
    const one = await buildTestApp(t, testConfig('cluster-wait-1', { ...CLUSTER, REDIS_MIN_REPLICAS: 1, REDIS_WAIT_TIMEOUT_MS: 2000 }))
    for (let i = 0; i < 3; i++) {
      const res = await one.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'replicated' } })
      t.equal(res.statusCode, 202, `shard ${shardOf(res.json<{ id: string }>().id)}: its master’s replica confirmed`)
    }
    const two = await buildTestApp(t, testConfig('cluster-wait-2', { ...CLUSTER, REDIS_MIN_REPLICAS: 2, REDIS_WAIT_TIMEOUT_MS: 200 }))
    const headers = { ...AUTH, 'idempotency-key': 'wait-2' }
    const refused = await two.inject({ method: 'POST', url: '/messages', headers, payload: { to: '+41793026727', text: 'two replicas?' } })
    t.equal(refused.statusCode, 503)
    t.match(refused.json(), { message: /Only 1 of the 2 Redis replicas required/ })
    const retried = await two.inject({ method: 'POST', url: '/messages', headers, payload: { to: '+41793026727', text: 'two replicas?' } })
    t.equal(retried.statusCode, 200, 'the retry with its Idempotency-Key finds the message, which was stored')
  })

  t.test('QUEUE_PARTITIONS may be raised, never lowered', async (t) => {
    const env = testEnv('cluster-partitions', { ...CLUSTER, QUEUE_PARTITIONS: 3 })
    const app = await buildTestApp(t, loadConfig(env))
    const res = await app.inject({ method: 'PUT', url: '/suppressions/+41793020001', headers: AUTH, payload: {} })
    t.equal(res.statusCode, 200)
    await t.rejects(buildTestApp(t, loadConfig({ ...env, QUEUE_PARTITIONS: '2' })), /QUEUE_PARTITIONS=2 is lower than the 3 this deployment/)
    await t.rejects(
      startWorkers(loadConfig({ ...env, QUEUE_PARTITIONS: '1' }), pino({ level: 'silent' })),
      /QUEUE_PARTITIONS=1 is lower than the 3/,
      'the workers refuse too',
    )
    const raised = await buildTestApp(t, loadConfig({ ...env, QUEUE_PARTITIONS: '6' }))
    const sent = await Promise.all(
      Array.from({ length: 6 }, () => raised.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793020001', text: 'suppressed?' } })),
    )
    t.same(new Set(sent.map((r) => shardOf(r.json<{ id: string }>().id))).size, 6, 'the new shards are used')
    t.ok(
      sent.every((r) => r.json<{ status: string }>().status === 'REJECTED'),
      'the suppression list was copied into the new shards',
    )
  })
}
