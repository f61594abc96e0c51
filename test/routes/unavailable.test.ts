import t from 'tap'
import { AUTH, buildTestApp, testConfig } from '../helpers/index.js'

t.test('Redis unreachable: 503 at once, /ready 503, /health still 200', async (t) => {
  const config = testConfig('unavailable')
  const app = await buildTestApp(t, config)
  app.redis.disconnect()
  app.queueRedis.disconnect()
  const started = Date.now()
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { ...AUTH, 'content-type': 'application/json' },
    payload: { to: '+41793026727', text: 'hi' },
  })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, error: 'Service Unavailable', message: /nothing was stored/ })
  t.ok(Date.now() - started < 1000, 'no waiting for a reconnect')
  const batch = await app.inject({
    method: 'POST',
    url: '/messages/batch',
    headers: { ...AUTH, 'content-type': 'application/json' },
    payload: { messages: [{ to: '+41793026727', text: 'hi' }] },
  })
  t.equal(batch.statusCode, 503)
  t.equal((await app.inject({ url: '/ready' })).statusCode, 503)
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})
