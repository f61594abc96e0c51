import t from 'tap'
import { AUTH, buildTestApp, DLR_TOKEN, testConfig, TEST_CLUSTER } from '../helpers/index.js'
if (TEST_CLUSTER) {
  t.plan(0, 'about a single Redis without replicas: on the cluster every master has one (test/redis/cluster.test.ts covers REDIS_MIN_REPLICAS there)')
} else {
  /**
   * REDIS_MIN_REPLICAS against the single Redis of the tests, which has no replica: every answer that
   * acknowledges a write must wait for one, time out, and answer 503 saying why. (With replicas, the
   * Sentinel tests show the 2xx.)
   */
  const REPLICAS_503 = /^Only 0 of the 1 Redis replicas required \(REDIS_MIN_REPLICAS\) confirmed the write within 50 ms: it may have been applied/
  const message = { to: '+41793026727', text: 'hello' }
  const report = { results: [{ messageId: 'unknown-1', status: { groupId: 3, id: 5, name: 'DELIVERED_TO_HANDSET' } }] }
  const inbound = { results: [{ messageId: 'mo-1', from: '41793026727', to: '41790000000', text: 'STOP', receivedAt: new Date().toISOString() }] }

  t.test('with REDIS_MIN_REPLICAS=1 and no replica, every acknowledging answer is a 503 that says why', async (t) => {
    const app = await buildTestApp(t, testConfig('durability', { REDIS_MIN_REPLICAS: 1, REDIS_WAIT_TIMEOUT_MS: 50 }))
    const requests = {
      'POST /messages': { method: 'POST', url: '/messages', headers: AUTH, payload: message },
      'POST /messages/batch': { method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages: [message, message] } },
      'POST /messages/cancel': { method: 'POST', url: '/messages/cancel', headers: AUTH, payload: { reference: 'campaign-1' } },
      'PUT /suppressions': { method: 'PUT', url: '/suppressions/%2B41793026728', headers: AUTH, payload: {} },
      'POST /infobip-dlr': { method: 'POST', url: `/infobip-dlr?token=${DLR_TOKEN}`, payload: report },
      'POST /infobip-inbound': { method: 'POST', url: `/infobip-inbound?token=${DLR_TOKEN}`, payload: inbound },
    } as const
    for (const [name, request] of Object.entries(requests)) {
      const res = await app.inject(request)
      t.equal(res.statusCode, 503, name)
      t.match(res.json(), { statusCode: 503, message: REPLICAS_503 }, `${name}: the message says why`)
      t.equal(res.headers['retry-after'], '1')
    }
    // The suppression was written (the 503 says it may have been): taking it off is acknowledged too.
    const remove = await app.inject({ method: 'DELETE', url: '/suppressions/%2B41793026728', headers: AUTH })
    t.equal(remove.statusCode, 503, 'DELETE /suppressions')

    // A message whose replicas did not confirm it exists: a retry with its key gets it, not a copy.
    const keyed = { method: 'POST', url: '/messages', headers: { ...AUTH, 'idempotency-key': 'k-1' }, payload: message } as const
    t.equal((await app.inject(keyed)).statusCode, 503)
    const retry = await app.inject(keyed)
    t.equal(retry.statusCode, 200, 'the retry is a replay')
    t.equal(retry.headers['idempotent-replayed'], 'true')
    const { id } = retry.json<{ id: string }>()
    const cancel = await app.inject({ method: 'POST', url: `/messages/${id}/cancel`, headers: AUTH })
    t.equal(cancel.statusCode, 503, 'POST /messages/:id/cancel')
    t.match((await app.inject({ url: `/messages/${id}`, headers: AUTH })).json(), { status: 'CANCELED' }, 'reads need no replica')
  })

  t.test('with REDIS_MIN_REPLICAS=0 (the default) nothing waits', async (t) => {
    const app = await buildTestApp(t, testConfig('durability-off', { REDIS_WAIT_TIMEOUT_MS: 50 }))
    t.equal((await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: message })).statusCode, 202)
    t.equal((await app.inject({ method: 'PUT', url: '/suppressions/%2B41793026728', headers: AUTH, payload: {} })).statusCode, 200)
    t.equal((await app.inject({ method: 'POST', url: `/infobip-dlr?token=${DLR_TOKEN}`, payload: report })).statusCode, 200)
  })
}
