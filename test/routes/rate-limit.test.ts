import t from 'tap'
import { AUTH, buildTestApp, testConfig } from '../helpers/index.js'

t.test('two API processes share one per-tenant budget on /messages*', async (t) => {
  const config = testConfig('ratelimit', { RATE_LIMIT_PER_MINUTE: 6 })
  const apps = [await buildTestApp(t, config), await buildTestApp(t, config)]
  const codes: number[] = []
  for (let i = 0; i < 6; i++) {
    const app = apps[i % 2]!
    // Reads, singles and batches all count once.
    const res =
      i % 3 === 0
        ? await app.inject({ url: '/messages/msg_unknown', headers: AUTH })
        : await app.inject({
            method: 'POST',
            url: i % 3 === 1 ? '/messages' : '/messages/batch',
            headers: AUTH,
            payload: i % 3 === 1 ? { to: '+41793026727', text: 'x' } : { messages: [{ to: '+41793026727', text: 'x' }] },
          })
    codes.push(res.statusCode)
    t.equal(res.headers['x-ratelimit-limit'], '6')
    t.equal(res.headers['x-ratelimit-remaining'], String(5 - i))
  }
  t.same(codes, [404, 202, 202, 404, 202, 202])
  const over = await apps[0]!.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'x' } })
  t.equal(over.statusCode, 429)
  t.match(over.json(), { statusCode: 429, error: 'Too Many Requests', message: /Rate limit of 6 requests per minute exceeded/ })
  t.ok(Number(over.headers['retry-after']) > 0, 'Retry-After in seconds')
  const otherKey = await apps[1]!.inject({
    method: 'POST',
    url: '/messages',
    headers: { authorization: 'Bearer second-key-0123456789' },
    payload: { to: '+41793026727', text: 'x' },
  })
  t.equal(otherKey.statusCode, 429, 'another API key of the same tenant shares its budget')
  const health = await apps[0]!.inject({ url: '/health' })
  t.equal(health.statusCode, 200, 'operations routes are not limited')
})
