import t from 'tap'
import { AUTH, buildTestApp, countWrites, keysUnder, testConfig } from '../helpers/index.js'

const config = testConfig('messages')
const app = await buildTestApp(t, config)

const post = (body: unknown, headers: Record<string, string> = {}, url = '/messages') =>
  app.inject({
    method: 'POST',
    url,
    headers: { ...AUTH, 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  })

t.test('a valid message is stored, queued and answered 202 with its resource', async (t) => {
  const res = await post({ to: '+41 79 302 67 27', text: 'Your code is 1234', from: 'MyBrand', reference: 'order-42', validityPeriodMinutes: 720 })
  t.equal(res.statusCode, 202)
  const body = res.json()
  t.match(body.id, /^msg_[0-9A-Z]{26}$/)
  t.equal(res.headers.location, `/messages/${body.id}`)
  t.match(body, {
    to: '41793026727',
    from: 'MyBrand',
    reference: 'order-42',
    status: 'QUEUED',
    final: false,
    encoding: 'GSM-7',
    segments: 1,
    attempts: 0,
    validityPeriodMinutes: 720,
    infobip: null,
    error: null,
  })
  t.match(body.events, [{ seq: 1, status: 'QUEUED', source: 'api' }])

  const get = await app.inject({ url: `/messages/${body.id}`, headers: AUTH })
  t.equal(get.statusCode, 200)
  t.same(get.json(), body, 'GET returns what POST answered')

  const job = await app.queues.send.getJob(body.id)
  t.same(job?.data, { ids: [body.id], tenant: 'default' }, 'a send job named after the message and its tenant')
  t.equal(job?.opts.attempts, config.SEND_MAX_ATTEMPTS)
})

t.test('from defaults to INFOBIP_SENDER; Unicode text is UCS-2 with its segments', async (t) => {
  const res = await post({ to: '0041793026727', text: 'Привет 👋'.repeat(10) })
  t.equal(res.statusCode, 202)
  t.match(res.json(), { from: 'InfoSMS', to: '41793026727', encoding: 'UCS-2', segments: 2 })
})

t.test('authentication', async (t) => {
  for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${AUTH.authorization.slice(7)}` }, { authorization: 'Bearer' }]) {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: { 'content-type': 'application/json', ...headers }, payload: '{}' })
    t.equal(res.statusCode, 401, JSON.stringify(headers))
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized' })
  }
  const get = await app.inject({ url: '/messages/msg_x' })
  t.equal(get.statusCode, 401, 'GET needs the key too')
  const second = await post({ to: '+41793026727', text: 'x' }, { authorization: 'Bearer second-key-0123456789' })
  t.equal(second.statusCode, 202, 'every key of API_KEYS is accepted')
})

t.test('bad input gets a 400 naming the field and stores nothing', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ text: 'hi' }, /body\/to is required/],
    [{ to: '+41793026727' }, /body\/text is required/],
    [{ to: 41793026727, text: 'hi' }, /body\/to must be string/],
    [{ to: '+41793026727', text: 42 }, /body\/text must be string/],
    [{ to: '+41793026727', text: '' }, /body\/text must NOT have fewer than 1 characters/],
    [{ to: '+41793026727', text: 'hi', colour: 'red' }, /body\/colour is not allowed/],
    [{ to: '+41 79 302 67 2', text: 'hi' }, /body\/to must be a valid international phone number/],
    [{ to: '079 302 67 27', text: 'hi' }, /body\/to must be a valid international phone number/],
    [{ to: 'call me', text: 'hi' }, /body\/to must be a valid international phone number/],
    [{ to: '+41793026727', text: 'a'.repeat(3826) }, /body\/text needs 26 segments \(GSM-7\); at most 25/],
    [{ to: '+41793026727', text: 'ж'.repeat(67 * 25 + 1) }, /body\/text needs 26 segments \(UCS-2\)/],
    [{ to: '+41793026727', text: 'hi', from: 'ThisIsTooLong' }, /body\/from must match pattern/],
    [{ to: '+41793026727', text: 'hi', from: '1234567890123456' }, /body\/from must match pattern/],
    [{ to: '+41793026727', text: 'hi', reference: 'r'.repeat(101) }, /body\/reference must NOT have more than 100 characters/],
    [{ to: '+41793026727', text: 'hi', callbackUrl: 'ftp://example.com/x' }, /body\/callbackUrl must match pattern/],
    [{ to: '+41793026727', text: 'hi', sendAt: 'tomorrow' }, /body\/sendAt must match format "date-time"/],
    [{ to: '+41793026727', text: 'hi', sendAt: '2020-01-01T00:00:00Z' }, /body\/sendAt must be in the future/],
    [{ to: '+41793026727', text: 'hi', sendAt: new Date(Date.now() + 181 * 86_400_000).toISOString() }, /body\/sendAt must be at most 180 days ahead/],
    [{ to: '+41793026727', text: 'hi', validityPeriodMinutes: 0 }, /body\/validityPeriodMinutes must be >= 1/],
    [{ to: '+41793026727', text: 'hi', validityPeriodMinutes: 2881 }, /body\/validityPeriodMinutes must be <= 2880/],
    [{ to: '+41793026727', text: 'hi', validityPeriodMinutes: 1.5 }, /body\/validityPeriodMinutes must be integer/],
    [[{ to: '+41793026727', text: 'hi' }], /body must be object/],
  ]
  const keysBefore = (await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length
  for (const [body, message] of cases) {
    const res = await post(body)
    t.equal(res.statusCode, 400, JSON.stringify(body).slice(0, 80))
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message })
  }
  const notJson = await post('{"to": "+41793026727", "text": ')
  t.equal(notJson.statusCode, 400, 'malformed JSON')
  t.match(notJson.json().message, /JSON/)
  const textPlain = await app.inject({ method: 'POST', url: '/messages', headers: { ...AUTH, 'content-type': 'text/plain' }, payload: 'hello' })
  t.equal(textPlain.statusCode, 400, 'not JSON at all')
  t.match(textPlain.json().message, /^body must be object/)
  const longKey = await post({ to: '+41793026727', text: 'hi' }, { 'idempotency-key': 'k'.repeat(256) })
  t.equal(longKey.statusCode, 400)
  t.match(longKey.json().message, /headers\/idempotency-key must NOT have more than 255 characters/)
  t.equal((await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length, keysBefore, 'no record written')
})

t.test('a 5 MB body is refused with 413 before it is parsed', async (t) => {
  const res = await post({ to: '+41793026727', text: 'x'.repeat(5 * 1024 * 1024) })
  t.equal(res.statusCode, 413)
  const batch = await post({ messages: [{ to: '+41793026727', text: 'x'.repeat(5 * 1024 * 1024) }] }, {}, '/messages/batch')
  t.equal(batch.statusCode, 413)
})

t.test('GET of an unknown id is 404', async (t) => {
  const res = await app.inject({ url: '/messages/msg_00000000000000000000000000', headers: AUTH })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { statusCode: 404, error: 'Not Found' })
})

t.test('Idempotency-Key: a replay answers 200 with the original, a different body 422', async (t) => {
  const headers = { 'idempotency-key': `order-${Math.random()}` }
  const first = await post({ to: '+41793026727', text: 'once', reference: 'a' }, headers)
  t.equal(first.statusCode, 202)
  // The same body with its keys in another order is the same request.
  const again = await post({ reference: 'a', text: 'once', to: '+41793026727' }, headers)
  t.equal(again.statusCode, 200)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.json().id, first.json().id)
  const different = await post({ to: '+41793026727', text: 'twice' }, headers)
  t.equal(different.statusCode, 422)
  const otherKey = await post({ to: '+41793026727', text: 'once', reference: 'a' }, { ...headers, authorization: 'Bearer second-key-0123456789' })
  t.equal(otherKey.statusCode, 200, 'another API key of the same tenant shares its idempotency keys (tenants: test/routes/tenants.test.ts)')
  t.equal(otherKey.json().id, first.json().id)
  t.equal(await app.queues.send.getJob(first.json().id).then((j) => j?.data.ids.length), 1, 'one job for the first message')
})

t.test('Idempotency-Key: concurrent requests with one key create one message', async (t) => {
  const headers = { 'idempotency-key': `concurrent-${Math.random()}` }
  const answers = await Promise.all(Array.from({ length: 20 }, () => post({ to: '+41793026727', text: 'race' }, headers)))
  const codes = answers.map((a) => a.statusCode).sort()
  t.same(codes, [200, ...Array(18).fill(200), 202].sort(), 'one 202, the rest replays')
  t.equal(new Set(answers.map((a) => a.json().id)).size, 1, 'one message id')
})

t.test('sendAt makes a delayed job', async (t) => {
  const sendAt = new Date(Date.now() + 3_600_000).toISOString()
  const res = await post({ to: '+41793026727', text: 'later', sendAt })
  t.equal(res.statusCode, 202)
  t.equal(res.json().sendAt, sendAt)
  const job = await app.queues.send.getJob(res.json().id)
  t.equal(await job?.getState(), 'delayed')
  t.ok(job!.opts.delay! > 3_500_000 && job!.opts.delay! <= 3_600_000)
})

t.test('batch: 202 with every resource in order, jobs of up to 100', async (t) => {
  const messages = Array.from({ length: 250 }, (_, i) => ({ to: `+4179302${String(i).padStart(4, '0')}`, text: `n${i}`, reference: `r${i}` }))
  const res = await post({ messages }, {}, '/messages/batch')
  t.equal(res.statusCode, 202)
  const stored = res.json().messages as { id: string; reference: string; status: string }[]
  t.equal(stored.length, 250)
  t.same(
    stored.map((m) => m.reference),
    messages.map((m) => m.reference),
    'same order',
  )
  const jobs = await Promise.all([0, 100, 200].map((i) => app.queues.send.getJob(stored[i]!.id)))
  t.same(
    jobs.map((j) => j?.data.ids.length),
    [100, 100, 50],
  )
  t.same(
    jobs.flatMap((j) => j!.data.ids),
    stored.map((m) => m.id),
    'every message in exactly one job',
  )
})

t.test('batch: one invalid item refuses the whole batch and stores nothing', async (t) => {
  const before = (await Promise.all(app.store.shards.map((s) => app.redis.zcard(app.store.keys.outbox(s))))).reduce((a, b) => a + b, 0)
  const keysBefore = (await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length
  const messages = Array.from({ length: 5 }, () => ({ to: '+41793026727', text: 'ok' }))
  messages[3] = { to: '+41 00', text: 'bad' }
  const res = await post({ messages }, {}, '/messages/batch')
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /^body\/messages\/3\/to must be a valid international phone number/)
  const wrongType = await post(
    {
      messages: [
        { to: '+41793026727', text: 'ok' },
        { to: '+41793026727', text: 7 },
      ],
    },
    {},
    '/messages/batch',
  )
  t.match(wrongType.json().message, /^body\/messages\/1\/text must be string/)
  t.equal((await post({ messages: [] }, {}, '/messages/batch')).statusCode, 400, 'empty batch')
  const tooMany = await post({ messages: Array(1001).fill({ to: '+41793026727', text: 'x' }) }, {}, '/messages/batch')
  t.equal(tooMany.statusCode, 400)
  t.match(tooMany.json().message, /body\/messages must NOT have more than 1000 items/)
  t.equal((await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length, keysBefore, 'no record written')
  t.equal(
    (await Promise.all(app.store.shards.map((s) => app.redis.zcard(app.store.keys.outbox(s))))).reduce((a, b) => a + b, 0),
    before,
  )
})

t.test('batch: a constant number of Redis round trips, whatever its size', async (t) => {
  // Background writes (metrics flushes, queue metadata) are not the request's round trips.
  const writes = countWrites(t, app.redis, /:metrics|:meta\b/)
  const count = async (n: number) => {
    writes.reset()
    const res = await post({ messages: Array.from({ length: n }, (_, i) => ({ to: '+41793026727', text: `m${i}` })) }, {}, '/messages/batch')
    t.equal(res.statusCode, 202)
    return writes.count
  }
  await count(1)
  const small = await count(2)
  const large = await count(1000)
  t.ok(small > 0)
  t.equal(large, small, `1,000 messages cost as many writes to Redis as 2 (${small})`)
})

t.test('when the jobs cannot be added, the records are removed again and the answer is 503', async (t) => {
  // A Redis failure between the two writes cannot be staged with a real Redis: fake the second one.
  const queue = app.queues.send
  const add = queue.add.bind(queue)
  const addBulk = queue.addBulk.bind(queue)
  const broken = async () => {
    throw new Error('Connection is closed.')
  }
  const restore = () => {
    queue.add = add
    queue.addBulk = addBulk
  }
  t.teardown(restore)
  queue.add = broken
  queue.addBulk = broken
  const keysBefore = (await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length
  const single = await post({ to: '+41793026727', text: 'lost?' }, { 'idempotency-key': 'half-stored' })
  t.equal(single.statusCode, 503)
  const batch = await post(
    {
      messages: [
        { to: '+41793026727', text: 'a' },
        { to: '+41793026727', text: 'b', sendAt: new Date(Date.now() + 60_000).toISOString() },
      ],
    },
    {},
    '/messages/batch',
  )
  t.equal(batch.statusCode, 503, 'a batch of two jobs too')
  t.equal((await keysUnder(app.redis, `${app.config.KEY_PREFIX}:*:msg:*`)).length, keysBefore, 'no record left behind')
  restore()
  const retry = await post({ to: '+41793026727', text: 'lost?' }, { 'idempotency-key': 'half-stored' })
  t.equal(retry.statusCode, 202, 'the key was released: a retry is a new request')
})
