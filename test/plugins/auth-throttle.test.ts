import type { LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { authFailuresKey } from '../../src/plugins/auth-throttle.js'
import { buildTestApp, DLR_TOKEN, testConfig, waitFor } from '../helpers/index.js'

const USER = 'ops'
const PASSWORD = 'board-password-0123'
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

const config = testConfig('auth-throttle', { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD })
const { AUTH_FAILURES_PER_MINUTE } = config
const app = await buildTestApp(t, config)

const dlr = (remoteAddress: string, token: string) =>
  app.inject({ method: 'POST', url: `/infobip-dlr?token=${token}`, remoteAddress, payload: { results: [] } })
const board = (remoteAddress: string, password: string) =>
  app.inject({ url: '/admin/queues/api/queues', remoteAddress, headers: { authorization: basic(USER, password) } })

/** The windows are fixed minutes: a burst that straddled two would be counted in halves. */
const windowAhead = () => waitFor(() => Date.now() % 60_000 < 50_000, 15_000, 'ten seconds left in the minute', 250)

/** A refusal of the throttle: 429 with a Retry-After within the current minute. */
function assertThrottled(t: Test, res: LightMyRequestResponse, what: string) {
  t.equal(res.statusCode, 429, what)
  const wait = Number(res.headers['retry-after'])
  t.ok(wait >= 1 && wait <= 60, `${what}: Retry-After ${String(res.headers['retry-after'])}`)
  t.match(res.json(), { statusCode: 429, error: 'Too Many Requests', message: /failed authentications/ }, what)
}

t.test('wrong DLR tokens: 401 up to the limit, then 429 even with the right token; other addresses unaffected', async (t) => {
  await windowAhead()
  const attacker = '203.0.113.10'
  for (let i = 0; i < AUTH_FAILURES_PER_MINUTE; i++) t.equal((await dlr(attacker, `wrong-token-${i}-0123456789`)).statusCode, 401, `guess ${i + 1}`)
  assertThrottled(t, await dlr(attacker, DLR_TOKEN), 'the right token after the limit')
  assertThrottled(t, await dlr(attacker, 'wrong-token-0123456789'), 'another guess')
  t.equal((await dlr('203.0.113.11', DLR_TOKEN)).statusCode, 200, 'another address gets through')
  t.equal((await dlr('203.0.113.11', 'wrong-token-0123456789')).statusCode, 401, 'and has its own count')
})

t.test('wrong dashboard credentials: 401 up to the limit, then 429 even with the right ones', async (t) => {
  await windowAhead()
  const attacker = '203.0.113.20'
  for (let i = 0; i < AUTH_FAILURES_PER_MINUTE; i++) t.equal((await board(attacker, `guess-${i}`)).statusCode, 401, `guess ${i + 1}`)
  const refused = await board(attacker, PASSWORD)
  assertThrottled(t, refused, 'the right password after the limit')
  t.notOk(refused.headers['www-authenticate'], 'no new challenge while throttled')
  t.equal((await board('203.0.113.21', PASSWORD)).statusCode, 200, 'another address gets through')
})

t.test('one count per address, whichever secret was wrong; successes do not count', async (t) => {
  await windowAhead()
  const address = '203.0.113.30'
  for (let i = 0; i < AUTH_FAILURES_PER_MINUTE - 2; i++) t.equal((await dlr(address, 'wrong-token-0123456789')).statusCode, 401)
  for (let i = 0; i < 5; i++) {
    t.equal((await dlr(address, DLR_TOKEN)).statusCode, 200, 'the right token')
    t.equal((await board(address, PASSWORD)).statusCode, 200, 'the right password')
  }
  t.equal((await board(address, 'wrong')).statusCode, 401, `failure ${AUTH_FAILURES_PER_MINUTE - 1}`)
  t.equal((await dlr(address, 'wrong-token-0123456789')).statusCode, 401, `failure ${AUTH_FAILURES_PER_MINUTE}`)
  assertThrottled(t, await board(address, PASSWORD), 'the dashboard after failures on both')
  assertThrottled(t, await dlr(address, DLR_TOKEN), 'the DLR route too')
})

t.test('the count lives under KEY_PREFIX for one minute', async (t) => {
  const address = '203.0.113.40'
  t.equal((await dlr(address, 'wrong-token-0123456789')).statusCode, 401)
  const minute = Math.floor(Date.now() / 60_000)
  // The request may have fallen in the minute before this one.
  const keys = [minute, minute - 1].map((m) => authFailuresKey(config.KEY_PREFIX, address, m))
  const values = await Promise.all(keys.map((key) => app.redis.get(key)))
  const i = values.findIndex((v) => v === '1')
  t.ok(i >= 0, `one failure counted at ${keys.join(' or ')}`)
  const ttl = await app.redis.ttl(keys[i]!)
  t.ok(ttl > 0 && ttl <= 60, `expires within a minute (TTL ${ttl} s)`)
})

t.test('Redis unreachable: the throttle lets requests through, the token is still checked', async (t) => {
  const down = await buildTestApp(t, testConfig('auth-throttle-down'))
  down.redis.disconnect()
  const post = (token: string) => down.inject({ method: 'POST', url: `/infobip-dlr?token=${token}`, payload: { results: [] } })
  for (let i = 0; i <= AUTH_FAILURES_PER_MINUTE; i++) t.equal((await post('wrong-token-0123456789')).statusCode, 401)
  // The dlr job goes through the queues' own connection, which is still up.
  t.equal((await post(DLR_TOKEN)).statusCode, 200)
})
