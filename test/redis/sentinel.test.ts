import { execFileSync } from 'node:child_process'
import type { Redis } from 'ioredis'
import t from 'tap'
import { AUTH, buildTestApp, startSystem, TEST_CLUSTER, testConfig, waitFor } from '../helpers/index.js'

/**
 * Against the Sentinel group of `.ci/redis-topologies.sh start` (master and replica on 6390/6391,
 * three sentinels on 26390-26392): skipped, saying so, when it is not running. One file, so that its
 * failover never runs beside the other Sentinel tests.
 */
const NAME = 'sms-test'
const SENTINEL_PORTS = [26390, 26391, 26392]
const SENTINEL = { REDIS_SENTINELS: SENTINEL_PORTS.map((p) => `127.0.0.1:${p}`).join(','), REDIS_SENTINEL_NAME: NAME }

const sentinel = (...args: string[]): string =>
  execFileSync('redis-cli', ['-p', String(SENTINEL_PORTS[0]), 'SENTINEL', ...args], { encoding: 'utf8', timeout: 2000 }).trim()
const masterPort = (): string | undefined => {
  try {
    return sentinel('get-master-addr-by-name', NAME).split('\n')[1]
  } catch {
    return undefined
  }
}
/** The master's replicas that are online and caught up, as the master itself reports them. */
const onlineReplicas = (port: string): number =>
  execFileSync('redis-cli', ['-p', port, 'INFO', 'replication'], { encoding: 'utf8', timeout: 2000 })
    .split('\n')
    .filter((line) => /^slave\d+:.*state=online/.test(line)).length

const remotePort = (redis: Redis) => redis.stream.remotePort

/** The group is up, and settled: the master has its replica and every sentinel agrees on it. */
async function settled(): Promise<string> {
  return waitFor(
    () => {
      const port = masterPort()
      if (!port || onlineReplicas(port) < 1) return undefined
      const agree = SENTINEL_PORTS.every((p) =>
        execFileSync('redis-cli', ['-p', String(p), 'SENTINEL', 'get-master-addr-by-name', NAME], { encoding: 'utf8' }).includes(port),
      )
      return agree ? port : undefined
    },
    15_000,
    'the sentinel group to settle',
    100,
  )
}

if (TEST_CLUSTER) {
  t.plan(0, 'about Sentinel: TEST_REDIS=cluster runs the suite on the cluster')
} else if (masterPort() === undefined) {
  t.plan(0, `the Sentinel group is not running on 127.0.0.1:${SENTINEL_PORTS.join('/')} (start it with .ci/redis-topologies.sh start)`)
} else {
  await settled()

  t.test('Sentinel mode: the API stores a message and the workers deliver it', async (t) => {
    // REDIS_URL points nowhere: everything must go through the sentinels.
    const { app } = await startSystem(t, 'sentinel', { ...SENTINEL, REDIS_URL: 'redis://127.0.0.1:1' })
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'via sentinel' } })
    t.equal(res.statusCode, 202)
    const { id } = res.json<{ id: string }>()
    await waitFor(
      async () => (await app.inject({ url: `/messages/${id}`, headers: AUTH })).json<{ status: string }>().status === 'DELIVERED',
      10_000,
      'DELIVERED',
    )
    t.equal(String(remotePort(app.redis as Redis)), masterPort(), 'the API is on the master the sentinels name')
  })

  t.test('REDIS_MIN_REPLICAS: 202 when the replica has the write, 503 saying so when there are not enough replicas', async (t) => {
    const one = await buildTestApp(t, testConfig('sentinel-wait-1', { ...SENTINEL, REDIS_MIN_REPLICAS: 1, REDIS_WAIT_TIMEOUT_MS: 1000 }))
    const started = Date.now()
    const accepted = await one.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'replicated' } })
    t.equal(accepted.statusCode, 202)
    t.comment(`answered in ${Date.now() - started} ms`)

    const two = await buildTestApp(t, testConfig('sentinel-wait-2', { ...SENTINEL, REDIS_MIN_REPLICAS: 2, REDIS_WAIT_TIMEOUT_MS: 100 }))
    const refused = await two.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'one replica only' } })
    t.equal(refused.statusCode, 503)
    t.match(refused.json(), { message: /^Only 1 of the 2 Redis replicas required \(REDIS_MIN_REPLICAS\) confirmed the write within 100 ms/ })
  })

  t.test('a failover while messages are posted: no 2xx without its record, and everything goes on without a restart', async (t) => {
    const before = await settled()
    // A job whose worker lost track of it during the switch runs again once its lock expires (JOB_LOCK_MS).
    const { app } = await startSystem(t, 'sentinel-failover', { ...SENTINEL, REDIS_MIN_REPLICAS: 1, REDIS_WAIT_TIMEOUT_MS: 500, JOB_LOCK_MS: 3000 })
    const accepted: string[] = []
    const answers = new Map<number, number>()
    const switched: { at?: number } = {}
    let firstAfterSwitch: number | undefined
    let stop = false
    const post = async () => {
      while (!stop) {
        const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'during failover' } })
        answers.set(res.statusCode, (answers.get(res.statusCode) ?? 0) + 1)
        if (res.statusCode === 202) {
          accepted.push(res.json<{ id: string }>().id)
          if (switched.at !== undefined) firstAfterSwitch ??= Date.now()
        } else if (res.statusCode !== 503) t.fail(`unexpected ${res.statusCode}: ${res.body}`)
        else await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
    const posters = Array.from({ length: 4 }, post)
    await waitFor(() => accepted.length >= 20, 5000, 'messages before the failover')

    const failoverAt = Date.now()
    t.equal(sentinel('failover', NAME), 'OK')
    const after = await waitFor(() => (masterPort() !== before ? masterPort() : undefined), 10_000, 'the new master', 50)
    switched.at = Date.now()
    const acceptedAtSwitch = accepted.length
    // The demoted master becomes the new one's replica only some 8 s after the switch (Sentinel's
    // grace period): until then REDIS_MIN_REPLICAS=1 cannot be met, and the answers are 503.
    await waitFor(() => accepted.length >= acceptedAtSwitch + 20, 30_000, '202s from the new master')
    stop = true
    await Promise.all(posters)
    t.not(after, before, `the master moved from ${before} to ${after}`)
    t.comment(
      `sentinels switched after ${switched.at - failoverAt} ms; first 202 after the switch ${firstAfterSwitch! - failoverAt} ms after SENTINEL FAILOVER; answers ${JSON.stringify(Object.fromEntries(answers))}`,
    )

    // Every 202 has its record on the new master, and the workers, never restarted, deliver them all.
    t.equal(String(remotePort(app.redis as Redis)), after, 'the API is on the new master')
    t.equal(String(remotePort(app.queueRedis as Redis)), after, 'and so are its queues')
    const missing = []
    for (const id of accepted) if ((await app.inject({ url: `/messages/${id}`, headers: AUTH })).statusCode !== 200) missing.push(id)
    t.same(missing, [], `all ${accepted.length} accepted messages are stored`)
    await waitFor(
      async () => {
        for (const id of accepted)
          if ((await app.inject({ url: `/messages/${id}`, headers: AUTH })).json<{ status: string }>().status !== 'DELIVERED') return false
        return true
      },
      30_000,
      'every accepted message DELIVERED',
      200,
    )
    t.pass('every accepted message was delivered')
    await settled()
  })
}
