import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { ConfigError, loadConfig } from '../../src/config.js'
import { createRedis, hostPorts } from '../../src/redis.js'
import { startWorkers } from '../../workers/start.js'
import { AUTH, buildTestApp, REDIS_URL, testConfig, testEnv, TEST_CLUSTER } from '../helpers/index.js'
if (TEST_CLUSTER) {
  t.plan(0, 'about REDIS_URL and Sentinel settings: TEST_REDIS=cluster runs the suite on the cluster (test/redis/cluster.test.ts covers its connections)')
} else {
  t.test('REDIS_SENTINELS needs REDIS_SENTINEL_NAME, and host:port entries', async (t) => {
    t.throws(() => loadConfig(testEnv('conn', { REDIS_SENTINELS: '127.0.0.1:26379' })), {
      name: 'ConfigError',
      message: 'Invalid configuration: REDIS_SENTINEL_NAME is required with REDIS_SENTINELS (the name of the master the sentinels watch)',
    })
    t.throws(() => loadConfig(testEnv('conn', { REDIS_SENTINELS: '127.0.0.1', REDIS_SENTINEL_NAME: 'm' })), /^Invalid configuration: REDIS_SENTINELS /)
    t.throws(() => loadConfig(testEnv('conn', { REDIS_CLUSTER_NODES: 'a:1,b' })), ConfigError)
    const config = loadConfig(testEnv('conn', { REDIS_SENTINELS: ' s1:26379, [::1]:26380 ', REDIS_SENTINEL_NAME: 'm' }))
    t.same(hostPorts(config.REDIS_SENTINELS!), [
      { host: 's1', port: 26379 },
      { host: '::1', port: 26380 },
    ])
    t.equal(config.REDIS_TLS, false)
    t.equal(config.REDIS_MIN_REPLICAS, 0)
    t.equal(config.REDIS_WAIT_TIMEOUT_MS, 500)
  })

  t.test('REDIS_CLUSTER_NODES: a cluster that does not answer stops the API and the workers with one line', async (t) => {
    const config = testConfig('conn', { REDIS_CLUSTER_NODES: '127.0.0.1:1,127.0.0.1:2' })
    const unreachable = /^Redis is not reachable at REDIS_CLUSTER_NODES=127\.0\.0\.1:1,127\.0\.0\.1:2: /
    await t.rejects(buildApp(config, { logger: false }), { message: unreachable })
    await t.rejects(startWorkers(config, pino({ level: 'silent' })), { message: unreachable })
  })

  t.test('REDIS_URL: user:password@ and the /N database are honoured', async (t) => {
    const admin = createRedis(REDIS_URL, 'worker', { lazyConnect: false })
    const user = `sms-test-${randomBytes(4).toString('hex')}`
    await admin.call('ACL', 'SETUSER', user, 'on', '>secret-pw', '~*', '&*', '+@all')
    t.teardown(async () => {
      await admin.call('ACL', 'DELUSER', user)
      admin.disconnect()
    })
    const url = new URL(REDIS_URL)
    url.username = user
    url.password = 'secret-pw'
    url.pathname = '/3'
    const config = testConfig('conn-url', { REDIS_URL: url.toString() })
    const app = await buildTestApp(t, config)
    t.equal(await app.redis.acl('WHOAMI'), user, 'the user of the URL')
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'db 3' } })
    t.equal(res.statusCode, 202)
    const db3 = createRedis(`${REDIS_URL.replace(/\/\d*$/, '')}/3`, 'worker', { lazyConnect: false })
    t.teardown(() => db3.disconnect())
    t.ok((await db3.keys(`${config.KEY_PREFIX}:*`)).length > 0, 'the keys are in database 3')
    t.equal((await admin.keys(`${config.KEY_PREFIX}:*`)).length, 0, 'not in database 0')
  })
}
