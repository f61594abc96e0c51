import t from 'tap'
import { boardName } from '../../src/plugins/bull-board.js'
import { inboundResults } from '../../src/queues.js'
import { shardOfKey } from '../../src/shards.js'
import { buildTestApp, DLR_TOKEN, testConfig } from '../helpers/index.js'

const OPS = { authorization: `Basic ${Buffer.from('ops:board-password-0123').toString('base64')}` }
const config = testConfig('inbound-route', { BULL_BOARD_USER: 'ops', BULL_BOARD_PASSWORD: 'board-password-0123' })
const app = await buildTestApp(t, config)
// The jobs of every partition (these tests' reports and messages all go to one).
const queues = app.queues.inbound
const queue = {
  getWaiting: async () => (await Promise.all(queues.partitions.map((q) => q.getWaiting()))).flat(),
}
t.beforeEach(() => Promise.all(queues.partitions.map((q) => q.drain())))

const URL_WITH_TOKEN = `/infobip-inbound?token=${DLR_TOKEN}`
const post = (payload: unknown, options: { url?: string; headers?: Record<string, string> } = {}) =>
  app.inject({
    method: 'POST',
    url: options.url ?? URL_WITH_TOKEN,
    headers: { 'content-type': 'application/json', ...options.headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  })
const storedJobs = async () => (await queue.getWaiting()).map((job) => inboundResults(job.data))

const mo = (messageId: string, text = 'STOP') => ({
  messageId,
  from: '41793026727',
  to: '41790000000',
  text,
  cleanText: '',
  keyword: text.split(' ')[0],
  receivedAt: '2026-11-28T10:00:00.000+0000',
  smsCount: 1,
  price: { pricePerMessage: 0, currency: 'EUR' },
  callbackData: null,
})

t.test('an MO_JSON_2 batch is stored as one inbound job, as it was sent, before the 200', async (t) => {
  const body = { results: [mo('in-1'), mo('in-2', 'hello'), { messageId: 'in-3', future: true }], messageCount: 3, pendingMessageCount: 0 }
  const text = JSON.stringify(body, null, 2)
  const res = await post(text, { headers: { 'content-type': 'text/plain' } })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { received: 3 })
  const [job, ...others] = await queue.getWaiting()
  t.same(others, [])
  t.equal(job!.data.body, text, 'the body exactly as it was sent')
  t.same(inboundResults(job!.data), body.results)
})

t.test('the token is required, in any of the forms /infobip-dlr takes', async (t) => {
  const body = { results: [mo('in-1')] }
  for (const url of ['/infobip-inbound', '/infobip-inbound?token=', '/infobip-inbound?token=wrong-token-0123456789']) {
    const res = await post(body, { url })
    t.equal(res.statusCode, 401, url)
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized' })
  }
  t.same(await storedJobs(), [])
  t.equal((await post(body, { url: '/infobip-inbound', headers: { 'x-webhook-token': DLR_TOKEN } })).statusCode, 200)
  const basic = `Basic ${Buffer.from(`infobip:${DLR_TOKEN}`).toString('base64')}`
  t.equal((await post(body, { url: '/infobip-inbound', headers: { authorization: basic } })).statusCode, 200)
  t.equal((await storedJobs()).length, 2)
})

t.test('bodies that are not { results: [...] } answer 400 and store nothing; too many results 413', async (t) => {
  const cases: [string, unknown, Record<string, string>?][] = [
    ['not JSON', '{"results": ['],
    ['empty body', ''],
    ['not JSON, as a form', 'results=1', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['JSON null', 'null'],
    ['an array', [mo('in-1')]],
    ['no results', { messages: [mo('in-1')] }],
    ['results is an object', { results: { 0: mo('in-1') } }],
    ['results is null', { results: null }],
    ['nested too deep', `{"results":[${'['.repeat(40)}${']'.repeat(40)}]}`],
  ]
  for (const [name, payload, headers] of cases) {
    const res = await post(payload, { headers: headers ?? {} })
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().error, 'Bad Request', name)
  }
  const tooMany = await post({ results: Array.from({ length: 2001 }, (_, i) => mo(`in-${i}`)) })
  t.equal(tooMany.statusCode, 413)
  t.match(tooMany.json().message, /2001 messages; at most 2000/)
  t.same(await storedJobs(), [])
})

t.test('in the OpenAPI document, tagged infobip, with an example and every answer', async (t) => {
  const doc = (await app.inject({ url: '/docs/json' })).json()
  const operation = doc.paths['/infobip-inbound'].post
  t.same(operation.tags, ['infobip'])
  t.ok(operation.requestBody.content['application/json'].examples ?? operation.requestBody.content['application/json'].example)
  t.same(Object.keys(operation.responses).sort(), ['200', '400', '401', '403', '413', '429', '503'])
})

t.test('Redis unreachable: 503 with Retry-After, so that Infobip retries', async (t) => {
  const broken = await buildTestApp(t, testConfig('inbound-down'))
  broken.redis.disconnect()
  broken.queueRedis.disconnect()
  const res = await broken.inject({ method: 'POST', url: URL_WITH_TOKEN, headers: { 'content-type': 'application/json' }, payload: { results: [mo('in-1')] } })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
})

t.test('the dashboard shows the inbound queue, its jobs without text or full numbers', async (t) => {
  t.equal((await post({ results: [{ ...mo('in-1', 'STOP my code is 4711'), cleanText: 'my code is 4711' }] })).statusCode, 200)
  // The job is in the partition of its sender.
  const partition = shardOfKey(JSON.stringify('41793026727'), config.QUEUE_PARTITIONS)
  const name = boardName('inbound', partition, config.QUEUE_PARTITIONS)
  const res = await app.inject({ url: `/admin/queues/api/queues?activeQueue=${name}&status=latest&page=1&jobsPerPage=10`, headers: OPS })
  const inbound = res.json<{ queues: { name: string; jobs: { data: { results: Record<string, unknown>[] } }[] }[] }>().queues.find((q) => q.name === name)!
  const [shown] = inbound.jobs[0]!.data.results
  t.match(shown, { messageId: 'in-1', from: '*******6727', to: '*******0000', keyword: 'STOP' })
  t.notOk(JSON.stringify(inbound).includes('4711'), 'neither text nor cleanText')

  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, new RegExp(`^sms_queue_jobs\\{queue="inbound",partition="${partition}",state="waiting"\\} 1$`, 'm'), 'its depth in the metrics')
  t.match(metrics, /^sms_inbound_total\{action="opt_out"\} 0$/m, 'every action exposed from the start')
})
