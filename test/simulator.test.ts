import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { request } from 'undici'
import { loadConfig, REQUIRED } from '../src/config.js'
import { buildSimulator } from '../src/simulator/app.js'
import { intoBatches, redactUrl, Reporter } from '../src/simulator/reporter.js'

/** JSON from the wire; the tests check it field by field. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the answers' shapes are what the tests check
type Json = any

const KEY = 'sim-test-key'
const AUTH = `App ${KEY}`
const INFOBIP_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$/
const PENDING_ACCEPTED = { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED', description: 'Message sent to next instance' }
const NO_ERROR = { groupId: 0, groupName: 'OK', id: 0, name: 'NO_ERROR', description: 'No Error', permanent: false }
const DUPLICATE = { groupId: 5, groupName: 'REJECTED', id: 23, name: 'REJECTED_DUPLICATE_MESSAGE_ID', description: 'Rejected duplicate message ID' }
const NOT_REGISTERED = { groupId: 5, groupName: 'REJECTED', id: 18, name: 'REJECTED_DESTINATION_NOT_REGISTERED', description: 'Destination not registered' }

// ---------------------------------------------------------------------------------------------------
// Helpers

async function startSimulator(t: Test, env: Record<string, string> = {}) {
  const config = loadConfig({ INFOBIP_API_KEY: KEY, SIM_DLR_DELAY_MS: '20', ...env }, REQUIRED.simulator)
  const app = buildSimulator(config)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

interface Received {
  path: string
  status: number
  at: number
  raw: string
  results: Json[]
}

/** A real HTTP server standing in for our /infobip-dlr; `statusFor` picks each answer. */
async function startReceiver(t: Test, statusFor: (path: string, attempt: number) => number = () => 200) {
  const received: Received[] = []
  const server = createServer((req, res) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      raw += chunk
    })
    req.on('end', () => {
      const path = req.url ?? ''
      const status = statusFor(path, received.filter((r) => r.path === path).length + 1)
      received.push({ path, status, at: Date.now(), raw, results: (JSON.parse(raw) as { results: Json[] }).results })
      res.statusCode = status
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const port = (server.address() as AddressInfo).port
  const ok = () => received.filter((r) => r.status < 300)
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    received,
    postsTo: (path: string) => ok().filter((r) => r.path === path),
    reportsFor: (messageId: string) =>
      ok()
        .flatMap((r) => r.results)
        .filter((r) => r.messageId === messageId),
  }
}

/** `auth: null` sends no Authorization header. A body that is not JSON (a gateway's page) stays text. */
async function call(method: 'GET' | 'POST', url: string, body?: unknown, auth: string | null = AUTH) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (auth !== null) headers['authorization'] = auth
  const res = await request(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.body.text()
  const json = String(res.headers['content-type']).includes('json')
  return { status: res.statusCode, headers: res.headers, body: text && json ? JSON.parse(text) : text || undefined }
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/** Polls until `check` returns something truthy; fails the test at the deadline instead of hanging. */
async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 5000): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value as Truthy<T>
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 15))
  }
}

const v3Message = (to: string, messageId: string | undefined, url: string | undefined, text = 'hello') => ({
  sender: 'TestSender',
  destinations: [{ to, messageId }],
  content: { text },
  webhooks: { delivery: { url }, contentType: 'application/json', callbackData: `cb-${messageId ?? 'none'}` },
})
const v3Body = (...messages: ReturnType<typeof v3Message>[]) => ({ messages })

const v2Body = (to: string, messageId: string, url: string) => ({
  bulkId: `bulk-${messageId}`,
  messages: [{ from: 'TestFrom', destinations: [{ to, messageId }], text: 'hello v2', notifyUrl: url, callbackData: `cb-${messageId}` }],
})

const v3ErrorShape = (errorCode: string) => ({
  errorCode,
  description: String,
  action: String,
  violations: Array,
  resources: Array,
})
const v2ErrorShape = (messageId: string) => ({ requestError: { serviceException: { messageId, text: String } } })

// ---------------------------------------------------------------------------------------------------
// One simulator and one receiver for the tests that do not change the knobs

const { base } = await startSimulator(t)
const receiver = await startReceiver(t, (path, attempt) => (path.startsWith('/dlr/retry') && attempt === 1 ? 500 : 200))
const sim = (messageId: string) => call('GET', `${base}/_sim/messages/${messageId}`, undefined, null)
const logs = (query: string) => call('GET', `${base}/sms/3/logs?${query}`)
const stats = async (at = base) => (await call('GET', `${at}/_sim/stats`, undefined, null)).body
const changeAuth = (at: string, change: unknown) => call('POST', `${at}/_sim/auth`, change, null)

t.test('requests without the right API key get 401 in the API version’s error shape', async (t) => {
  const body = v3Body(v3Message('41793026727', 'auth-1', undefined))
  for (const auth of [null, 'App wrong-key', `Bearer ${KEY}`, KEY]) {
    const res = await call('POST', `${base}/sms/3/messages`, body, auth)
    t.equal(res.status, 401, `v3 with ${auth ?? 'no header'}`)
    t.match(res.body, v3ErrorShape('E401'))
    t.same(res.body.violations, [])
    t.same(res.body.resources, [])
  }
  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'auth-2', 'http://x'), 'App nope')
  t.equal(v2.status, 401)
  t.match(v2.body, v2ErrorShape('UNAUTHORIZED'))
  const logsRes = await call('GET', `${base}/sms/3/logs`, undefined, null)
  t.equal(logsRes.status, 401)
  t.match(logsRes.body, v3ErrorShape('E401'))
  t.equal((await sim('auth-1')).status, 404, 'an unauthorised request is not a submission')
})

t.test('POST /_sim/auth { apiKey }: after a key rotation the old key gets 401', async (t) => {
  const { base } = await startSimulator(t)
  const NEW = 'App rotated-key'
  const send = (auth: string) => call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', undefined, undefined)), auth)
  t.equal((await send(AUTH)).status, 200, 'the old key works before')
  t.same((await changeAuth(base, { apiKey: 'rotated-key' })).body, { unauthorizedForMs: 0, forbidden: false })
  const old = await send(AUTH)
  t.equal(old.status, 401)
  t.match(old.body, v3ErrorShape('E401'))
  t.match(
    (await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'rotation-v2', 'http://127.0.0.1:9/'), AUTH)).body,
    v2ErrorShape('UNAUTHORIZED'),
  )
  t.equal((await call('GET', `${base}/sms/3/logs?messageId=x`, undefined, AUTH)).status, 401)
  t.equal((await send(NEW)).status, 200, 'the new key works')
  t.equal((await call('GET', `${base}/sms/3/logs?messageId=x`, undefined, NEW)).status, 200)
  t.equal((await changeAuth(base, { apiKey: '' })).status, 400, 'an empty key is refused')
})

t.test('POST /_sim/auth { unauthorizedForMs }: every send and logs request gets 401 for that long', async (t) => {
  const { base } = await startSimulator(t)
  const send = (id: string) => call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', id, undefined)))
  const started = Date.now()
  const state = (await changeAuth(base, { unauthorizedForMs: 400 })).body
  t.ok(state.unauthorizedForMs > 0 && state.unauthorizedForMs <= 400, `${state.unauthorizedForMs} ms left`)
  const refused = await send('outage-1')
  t.equal(refused.status, 401)
  t.match(refused.body, v3ErrorShape('E401'))
  t.match((await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'outage-v2', 'http://127.0.0.1:9/'))).body, v2ErrorShape('UNAUTHORIZED'))
  t.equal((await call('GET', `${base}/sms/3/logs?messageId=x`)).status, 401)
  t.equal((await call('GET', `${base}/_sim/messages/outage-1`, undefined, null)).status, 404, 'a 401 is not a submission')
  await waitFor('the key to work again', async () => (await send('outage-2')).status === 200, 3000)
  t.ok(Date.now() - started >= 400, 'not before the time was up')

  await changeAuth(base, { unauthorizedForMs: 60_000 })
  t.equal((await send('outage-3')).status, 401)
  t.same((await changeAuth(base, { unauthorizedForMs: 0 })).body, { unauthorizedForMs: 0, forbidden: false }, '0 ends it')
  t.equal((await send('outage-3')).status, 200)
})

t.test('POST /_sim/auth { forbidden }: 403 in the API version’s shape for a scope the key lacks', async (t) => {
  const { base } = await startSimulator(t)
  const sendV3 = () => call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', undefined, undefined)))
  const sendV2 = (id = 'forbidden-v2') => call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', id, 'http://127.0.0.1:9/'))
  const lookup = () => call('GET', `${base}/sms/3/logs?messageId=x`)
  const statuses = async () => [(await sendV3()).status, (await sendV2()).status, (await lookup()).status]

  t.same((await changeAuth(base, { forbidden: 'logs' })).body, { unauthorizedForMs: 0, forbidden: 'logs' })
  t.same(await statuses(), [200, 200, 403], 'a send-only key: logs get 403')
  const refused = await lookup()
  t.match(refused.body, v3ErrorShape('E403'))
  t.same(refused.body.violations, [])

  await changeAuth(base, { forbidden: 'send' })
  t.same(await statuses(), [403, 403, 200], 'a key without the send scope')
  t.match((await sendV3()).body, v3ErrorShape('E403'))
  t.match((await sendV2('forbidden-send')).body, v2ErrorShape('FORBIDDEN'))
  t.equal((await call('GET', `${base}/_sim/messages/forbidden-send`, undefined, null)).status, 404, 'a 403 is not a submission')
  t.equal(
    (await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', undefined, undefined)), 'App wrong')).status,
    401,
    'a wrong key is still 401',
  )

  await changeAuth(base, { forbidden: true })
  t.same(await statuses(), [403, 403, 403])
  t.equal((await changeAuth(base, { forbidden: 'everything' })).status, 400)
  await changeAuth(base, { forbidden: false })
  t.same(await statuses(), [200, 200, 200])
})

t.test('malformed requests get 400 in the API version’s error shape', async (t) => {
  const v3Cases: [string, unknown][] = [
    ['no messages', {}],
    ['empty messages', { messages: [] }],
    ['no destinations', { messages: [{ destinations: [], content: { text: 'x' } }] }],
    ['no text', { messages: [{ destinations: [{ to: '41793026727' }], content: {} }] }],
  ]
  for (const [name, body] of v3Cases) {
    const res = await call('POST', `${base}/sms/3/messages`, body)
    t.equal(res.status, 400, name)
    t.match(res.body, v3ErrorShape('E400'), name)
    t.ok(res.body.violations.length > 0, `${name}: violations name the field`)
  }
  const noText = await call('POST', `${base}/sms/2/text/advanced`, { messages: [{ destinations: [{ to: '41793026727' }] }] })
  t.equal(noText.status, 400)
  t.match(noText.body, v2ErrorShape('BAD_REQUEST'))
  t.match(noText.body.requestError.serviceException.validationErrors, { 'messages[0].text': [String] })

  const res = await request(`${base}/sms/3/messages`, {
    method: 'POST',
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: '{not json',
  })
  t.equal(res.statusCode, 400)
  t.match(await res.body.json(), v3ErrorShape('E400'))
})

t.test('v3: PENDING_ACCEPTED per destination, then a v3 report', async (t) => {
  const url = receiver.url('/dlr/v3-happy?token=secret')
  const body = {
    messages: [v3Message('41793026727', 'v3-happy-1', url), v3Message('41793026728', 'v3-happy-2', url, 'x'.repeat(400))],
    options: { schedule: { bulkId: 'bulk-v3-happy' }, includeSmsCountInResponse: true },
  }
  const res = await call('POST', `${base}/sms/3/messages`, body)
  t.equal(res.status, 200)
  t.same(res.body, {
    bulkId: 'bulk-v3-happy',
    messages: [
      { messageId: 'v3-happy-1', status: PENDING_ACCEPTED, destination: '41793026727', details: { messageCount: 1 } },
      { messageId: 'v3-happy-2', status: PENDING_ACCEPTED, destination: '41793026728', details: { messageCount: 3 } },
    ],
  })

  const [report] = await waitFor('the v3 report', () => receiver.reportsFor('v3-happy-1').length === 1 && receiver.reportsFor('v3-happy-1'))
  t.same(Object.keys(report), ['bulkId', 'messageId', 'to', 'sender', 'sentAt', 'doneAt', 'messageCount', 'mccMnc', 'callbackData', 'price', 'status', 'error'])
  t.match(report, {
    bulkId: 'bulk-v3-happy',
    messageId: 'v3-happy-1',
    to: '41793026727',
    sender: 'TestSender',
    sentAt: INFOBIP_TIME,
    doneAt: INFOBIP_TIME,
    messageCount: 1,
    mccMnc: String,
    callbackData: 'cb-v3-happy-1',
    price: { pricePerMessage: 0.01, currency: 'EUR' },
  })
  t.same(report.status, { groupId: 3, groupName: 'DELIVERED', id: 5, name: 'DELIVERED_TO_HANDSET', description: 'Message delivered to handset' })
  t.same(report.error, NO_ERROR)
  t.ok(Date.parse(report.doneAt) >= Date.parse(report.sentAt))

  await waitFor('reportsPosted to be counted', async () => (await sim('v3-happy-1')).body.reportsPosted === 1)
  t.same((await sim('v3-happy-1')).body, {
    messageId: 'v3-happy-1',
    to: '41793026727',
    text: 'hello',
    sender: 'TestSender',
    submissions: 1,
    accepted: 1,
    reportsPosted: 1,
  })
})

t.test('v2: the v2 answer and the v2 report shape', async (t) => {
  const url = receiver.url('/dlr/v2-happy?token=secret')
  const res = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'v2-happy-1', url))
  t.equal(res.status, 200)
  t.same(res.body, {
    bulkId: 'bulk-v2-happy-1',
    messages: [{ messageId: 'v2-happy-1', status: PENDING_ACCEPTED, to: '41793026727', smsCount: 1 }],
  })
  const [report] = await waitFor('the v2 report', () => receiver.reportsFor('v2-happy-1').length === 1 && receiver.reportsFor('v2-happy-1'))
  t.same(Object.keys(report), ['bulkId', 'messageId', 'to', 'from', 'sentAt', 'doneAt', 'smsCount', 'mccMnc', 'callbackData', 'price', 'status', 'error'])
  t.match(report, { bulkId: 'bulk-v2-happy-1', from: 'TestFrom', smsCount: 1, callbackData: 'cb-v2-happy-1', sentAt: INFOBIP_TIME, doneAt: INFOBIP_TIME })
  t.equal(report.status.name, 'DELIVERED_TO_HANDSET')
})

t.test('v3: messageCount in the answer only with options.includeSmsCountInResponse', async (t) => {
  const long = 'x'.repeat(200)
  const plain = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'count-off', undefined, long)))
  t.equal(plain.status, 200)
  t.notOk('details' in plain.body.messages[0], 'Infobip’s default: no messageCount')
  const counted = await call('POST', `${base}/sms/3/messages`, {
    ...v3Body(v3Message('41793026727', 'count-on', undefined, long)),
    options: { includeSmsCountInResponse: true },
  })
  t.equal(counted.status, 200)
  t.same(counted.body.messages[0].details, { messageCount: 2 })
  t.equal(
    (
      await call('POST', `${base}/sms/3/messages`, {
        ...v3Body(v3Message('41793026727', 'count-bad', undefined)),
        options: { includeSmsCountInResponse: 'yes' },
      })
    ).status,
    400,
  )
})

t.test('a destination without messageId gets a generated one, which its report carries', async (t) => {
  const url = receiver.url('/dlr/generated')
  const res = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', undefined, url)))
  t.equal(res.status, 200)
  const messageId: string = res.body.messages[0].messageId
  t.ok(messageId.length > 0)
  await waitFor('the report', () => receiver.reportsFor(messageId).length === 1)
  t.equal((await sim(messageId)).body.accepted, 1)
})

t.test('webhooks.delivery.notify=false means no report', async (t) => {
  const url = receiver.url('/dlr/notify')
  const silent = { ...v3Message('41793026727', 'notify-off', url), webhooks: { delivery: { url, notify: false } } }
  await call('POST', `${base}/sms/3/messages`, { messages: [silent, v3Message('41793026727', 'notify-on', url)] })
  // The sentinel's report is due at the same instant: once it is here, the other one would be too.
  await waitFor('the sentinel report', () => receiver.reportsFor('notify-on').length === 1)
  t.same(receiver.reportsFor('notify-off'), [])
  t.equal((await logs('messageId=notify-off')).body.results[0].status.name, 'DELIVERED_TO_HANDSET', 'the logs still know it')
})

t.test('the last four digits pick the reports', async (t) => {
  const cases: { suffix: string; statuses: [number, number][]; error?: Json }[] = [
    { suffix: '0001', statuses: [[2, 9]], error: { groupId: 1, id: 27, name: 'EC_ABSENT_SUBSCRIBER', permanent: false } },
    { suffix: '0002', statuses: [[4, 15]] },
    { suffix: '0003', statuses: [[5, 6]] },
    {
      suffix: '0008',
      statuses: [
        [3, 5],
        [1, 7],
      ],
    },
    {
      suffix: '0010',
      statuses: [
        [3, 2],
        [3, 5],
      ],
    },
    { suffix: '4567', statuses: [[3, 5]] },
  ]
  await Promise.all(
    cases.map(async ({ suffix }) => {
      const res = await call(
        'POST',
        `${base}/sms/3/messages`,
        v3Body(v3Message(`+4179300${suffix}`, `outcome-${suffix}`, receiver.url(`/dlr/outcome-${suffix}`))),
      )
      t.equal(res.status, 200, `${suffix} is accepted`)
    }),
  )
  for (const { suffix, statuses, error } of cases) {
    const messageId = `outcome-${suffix}`
    const reports = await waitFor(`${suffix} reports`, () => receiver.reportsFor(messageId).length >= statuses.length && receiver.reportsFor(messageId))
    t.same(
      reports.map((r: Json) => [r.status.groupId, r.status.id]),
      statuses,
      `${suffix}: statuses in arrival order`,
    )
    t.match(reports.at(-1).error, error ?? NO_ERROR, `${suffix}: error`)
    const doneAts = reports.map((r: Json) => Date.parse(r.doneAt))
    t.same([...new Set(doneAts)], doneAts, `${suffix}: each report has its own doneAt`)
    t.same([...doneAts].sort(), doneAts, `${suffix}: doneAt grows`)
    const posts = receiver.postsTo(`/dlr/outcome-${suffix}`)
    t.ok(
      posts.every((p, i) => i === 0 || p.at >= posts[i - 1]!.at),
      `${suffix}: later reports come in later POSTs`,
    )
  }
  const finals = await logs('messageId=outcome-0008,outcome-0010')
  t.same(
    finals.body.results.map((r: Json) => [r.messageId, r.status.name]),
    [
      ['outcome-0008', 'DELIVERED_TO_HANDSET'], // a late PENDING does not make the logs go back
      ['outcome-0010', 'DELIVERED_TO_HANDSET'],
    ],
  )
})

t.test('0007: the final report is POSTed three times, byte-identical', async (t) => {
  const path = '/dlr/0007'
  await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000007', 'outcome-0007', receiver.url(path))))
  const posts = await waitFor('three POSTs', () => receiver.postsTo(path).length >= 3 && receiver.postsTo(path))
  t.equal(posts.length, 3)
  t.ok(
    posts.every((p) => p.raw === posts[0]!.raw),
    'same bytes',
  )
  t.equal(posts[0]!.results.length, 1)
  t.equal(posts[0]!.results[0].status.name, 'DELIVERED_TO_HANDSET')
  await waitFor('reportsPosted = 3', async () => (await sim('outcome-0007')).body.reportsPosted === 3)
})

t.test('0009: no report, but the logs say DELIVERED', async (t) => {
  const url = receiver.url('/dlr/0009')
  await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000009', 'outcome-0009', url), v3Message('41793026727', 'sentinel-0009', url)))
  await waitFor('the sentinel report', () => receiver.reportsFor('sentinel-0009').length === 1)
  const entry = await waitFor('logs to show DELIVERED', async () => {
    const [result] = (await logs('messageId=outcome-0009')).body.results
    return result?.status.name === 'DELIVERED_TO_HANDSET' && result
  })
  t.match(entry, { messageId: 'outcome-0009', destination: '41793000009', doneAt: INFOBIP_TIME, error: NO_ERROR })
  t.same(receiver.reportsFor('outcome-0009'), [])
  t.equal((await sim('outcome-0009')).body.reportsPosted, 0)
})

t.test('0011: a per-destination REJECTED_DESTINATION_NOT_REGISTERED, no report; the logs show it', async (t) => {
  const url = receiver.url('/dlr/0011')
  const res = await call(
    'POST',
    `${base}/sms/3/messages`,
    v3Body(v3Message('41793000011', 'outcome-0011', url), v3Message('41793026727', 'sentinel-0011', url)),
  )
  t.equal(res.status, 200, 'a 200, not a 400 for the request')
  t.same(res.body.messages[0], { messageId: 'outcome-0011', status: NOT_REGISTERED, destination: '41793000011' })
  t.same(res.body.messages[1].status, PENDING_ACCEPTED, 'the other destination is accepted')
  await waitFor('the sentinel report', () => receiver.reportsFor('sentinel-0011').length === 1)
  t.same(receiver.reportsFor('outcome-0011'), [])
  t.match((await sim('outcome-0011')).body, { submissions: 1, accepted: 0, reportsPosted: 0 })
  const [entry] = (await logs('messageId=outcome-0011')).body.results
  t.match(entry, { messageId: 'outcome-0011', destination: '41793000011', doneAt: INFOBIP_TIME, error: NO_ERROR })
  t.same(entry.status, NOT_REGISTERED)

  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793000011', 'outcome-0011-v2', url))
  t.equal(v2.status, 200)
  t.same(v2.body.messages[0], { messageId: 'outcome-0011-v2', status: NOT_REGISTERED, to: '41793000011', smsCount: 1 })
})

t.test('0012: accepted and reported as usual, but the answer is a gateway’s 502', async (t) => {
  const url = receiver.url('/dlr/0012')
  const body = v3Body(v3Message('41793000012', 'outcome-0012', url))
  const before = await stats()
  const res = await call('POST', `${base}/sms/3/messages`, body)
  t.equal(res.status, 502)
  t.match(res.headers['content-type'], /^text\/html/)
  t.match(res.body, /502 Bad Gateway/)
  t.match((await sim('outcome-0012')).body, { submissions: 1, accepted: 1 })
  t.equal((await stats()).accepted - before.accepted, 1, 'counted as accepted')
  const [report] = await waitFor('the report', () => receiver.reportsFor('outcome-0012').length === 1 && receiver.reportsFor('outcome-0012'))
  t.equal(report.status.name, 'DELIVERED_TO_HANDSET')
  t.equal((await logs('messageId=outcome-0012')).body.results[0].status.name, 'DELIVERED_TO_HANDSET')

  const retry = await call('POST', `${base}/sms/3/messages`, body)
  t.equal(retry.status, 200, 'a retry gets through the gateway')
  t.same(retry.body.messages[0].status, DUPLICATE)
  t.match((await sim('outcome-0012')).body, { submissions: 2, accepted: 1 })

  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793000012', 'outcome-0012-v2', url))
  t.equal(v2.status, 502)
  t.match((await sim('outcome-0012-v2')).body, { accepted: 1 })
})

t.test('0013: DELIVERED_TO_OPERATOR and never a handset report; the logs stay at DELIVERED_TO_OPERATOR', async (t) => {
  const url = receiver.url('/dlr/0013')
  // 0010's handset report is due when 0013's would be: once it is here, 0013's would be too.
  await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000013', 'outcome-0013', url), v3Message('41793000010', 'sentinel-0013', url)))
  await waitFor('the sentinel handset report', () => receiver.reportsFor('sentinel-0013').length === 2)
  const reports = receiver.reportsFor('outcome-0013')
  t.same(
    reports.map((r: Json) => [r.status.groupId, r.status.id, r.status.name]),
    [[3, 2, 'DELIVERED_TO_OPERATOR']],
  )
  const [entry] = (await logs('messageId=outcome-0013')).body.results
  t.same(entry.status, { groupId: 3, groupName: 'DELIVERED', id: 2, name: 'DELIVERED_TO_OPERATOR', description: 'Message delivered to operator' })
  t.match(entry, { doneAt: INFOBIP_TIME, error: NO_ERROR })
})

t.test('0004: 500 twice, then accepted — counted per messageId', async (t) => {
  const url = receiver.url('/dlr/0004')
  const send = (id: string) => call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000004', id, url)))
  const first = await send('outcome-0004-a')
  t.equal(first.status, 500)
  t.match(first.body, v3ErrorShape('E500'))
  t.equal((await send('outcome-0004-a')).status, 500)
  t.equal((await send('outcome-0004-b')).status, 500, 'another messageId has its own count')
  t.equal((await send('outcome-0004-a')).status, 200)
  t.match((await sim('outcome-0004-a')).body, { submissions: 3, accepted: 1 })
  await waitFor('the report', () => receiver.reportsFor('outcome-0004-a').length === 1)
  t.same(receiver.reportsFor('outcome-0004-b'), [])
})

t.test('0005: 429 with Retry-After once, then accepted', async (t) => {
  const body = v3Body(v3Message('41793000005', 'outcome-0005', receiver.url('/dlr/0005')))
  const first = await call('POST', `${base}/sms/3/messages`, body)
  t.equal(first.status, 429)
  t.equal(first.headers['retry-after'], '1')
  t.match(first.body, v3ErrorShape('E429'))
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 200)
  t.match((await sim('outcome-0005')).body, { submissions: 2, accepted: 1 })
})

t.test('status 23 REJECTED_DUPLICATE_MESSAGE_ID for a messageId accepted before; the first message goes on', async (t) => {
  const url = receiver.url('/dlr/duplicate')
  const first = await call('POST', `${base}/sms/3/messages`, {
    ...v3Body(v3Message('41793026727', 'dup-1', url)),
    options: { schedule: { bulkId: 'bulk-dup-first' } },
  })
  t.same(first.body.messages[0].status, PENDING_ACCEPTED)
  await waitFor('the first report', () => receiver.reportsFor('dup-1').length === 1)
  const before = await stats()

  const again = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'dup-1', url), v3Message('41793026728', 'dup-2', url)))
  t.equal(again.status, 200)
  t.same(again.body.messages[0], { messageId: 'dup-1', status: DUPLICATE, destination: '41793026727' })
  t.same(again.body.messages[1].status, PENDING_ACCEPTED, 'a new messageId in the same request is accepted')
  const twice = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026729', 'dup-3', url), v3Message('41793026729', 'dup-3', url)))
  t.same(
    twice.body.messages.map((m: Json) => m.status.id),
    [26, 23],
    'the same messageId twice in one request',
  )
  // dup-2's report is due when a second report of dup-1 would be, had the repeat been sent.
  await waitFor('the new message’s report', () => receiver.reportsFor('dup-2').length === 1)
  t.equal(receiver.reportsFor('dup-1').length, 1, 'not sent twice')
  t.match((await sim('dup-1')).body, { submissions: 2, accepted: 1, reportsPosted: 1 })
  t.match(
    (await logs('messageId=dup-1')).body.results,
    [{ bulkId: 'bulk-dup-first', status: { name: 'DELIVERED_TO_HANDSET' } }],
    'its log entry is the first one’s',
  )
  const after = await stats()
  t.equal(after.duplicates - before.duplicates, 2)
  t.equal(after.accepted - before.accepted, 2, 'dup-2 and one dup-3')

  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'dup-1', url))
  t.equal(v2.status, 200)
  t.same(v2.body.messages[0], { messageId: 'dup-1', status: DUPLICATE, to: '41793026727', smsCount: 1 }, 'on v2 as well, whichever API accepted it')
  t.match((await sim('dup-1')).body, { submissions: 3, accepted: 1 })
})

t.test('refused tries (0004, 0005) were never accepted: the later try is accepted, and only then is a retry a duplicate', async (t) => {
  const send = (to: string, id: string) => call('POST', `${base}/sms/3/messages`, v3Body(v3Message(to, id, undefined)))
  t.same([(await send('41793000004', 'dup-0004')).status, (await send('41793000004', 'dup-0004')).status], [500, 500])
  t.same((await send('41793000004', 'dup-0004')).body.messages[0].status, PENDING_ACCEPTED)
  t.same((await send('41793000004', 'dup-0004')).body.messages[0].status, DUPLICATE)
  t.match((await sim('dup-0004')).body, { submissions: 4, accepted: 1 })

  t.equal((await send('41793000005', 'dup-0005')).status, 429)
  t.same((await send('41793000005', 'dup-0005')).body.messages[0].status, PENDING_ACCEPTED)
  t.same((await send('41793000005', 'dup-0005')).body.messages[0].status, DUPLICATE)
  t.match((await sim('dup-0005')).body, { submissions: 3, accepted: 1 })
})

t.test('a retry after a lost answer is a duplicate: the first try was accepted', async (t) => {
  const { base } = await startSimulator(t, { SIM_LATENCY_MS: '300' })
  const body = JSON.stringify(v3Body(v3Message('41793026727', 'dup-lost', undefined)))
  const headers = { authorization: AUTH, 'content-type': 'application/json' }
  await t.rejects(request(`${base}/sms/3/messages`, { method: 'POST', headers, body, signal: AbortSignal.timeout(50) }), 'the client gave up waiting')
  await waitFor('the acceptance', async () => (await call('GET', `${base}/_sim/messages/dup-lost`, undefined, null)).body?.accepted === 1)
  const retry = await call('POST', `${base}/sms/3/messages`, JSON.parse(body))
  t.same(retry.body.messages[0].status, DUPLICATE)
  t.match((await call('GET', `${base}/_sim/messages/dup-lost`, undefined, null)).body, { submissions: 2, accepted: 1 })
})

t.test('0006: 400 every time, in both shapes', async (t) => {
  const url = receiver.url('/dlr/0006')
  for (let i = 0; i < 2; i++) {
    const res = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000006', 'outcome-0006', url)))
    t.equal(res.status, 400)
    t.match(res.body, v3ErrorShape('E400'))
    t.match(res.body.description, /destination/i)
    t.same(res.body.violations, [{ property: 'messages[0].destinations[0].to', violation: 'invalid destination address' }])
  }
  t.match((await sim('outcome-0006')).body, { submissions: 2, accepted: 0 })
  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793000006', 'outcome-0006-v2', url))
  t.equal(v2.status, 400)
  t.match(v2.body, v2ErrorShape('BAD_REQUEST'))
  t.match(v2.body.requestError.serviceException.text, /destination/i)
})

t.test('one refused destination refuses the whole request', async (t) => {
  const url = receiver.url('/dlr/whole')
  const bad = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'whole-ok-1', url), v3Message('41793000006', 'whole-bad', url)))
  t.equal(bad.status, 400)
  t.same(
    bad.body.violations.map((v: Json) => v.property),
    ['messages[1].destinations[0].to'],
  )
  t.match((await sim('whole-ok-1')).body, { submissions: 1, accepted: 0 })

  const body = v3Body(v3Message('41793026727', 'whole-ok-2', url), v3Message('41793000004', 'whole-retry', url))
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 500)
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 500)
  t.match((await sim('whole-ok-2')).body, { submissions: 2, accepted: 0 })
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 200)
  t.match((await sim('whole-ok-2')).body, { submissions: 3, accepted: 1 })
})

t.test('reports are batched, at most 100 per POST', async (t) => {
  const path = '/dlr/batch'
  const messages = Array.from({ length: 150 }, (_, i) => v3Message(`417930${String(i).padStart(5, '1')}`, `batch-${i}`, receiver.url(path)))
  t.equal((await call('POST', `${base}/sms/3/messages`, { messages })).status, 200)
  const total = () => receiver.postsTo(path).reduce((n, p) => n + p.results.length, 0)
  await waitFor('150 reports', () => total() >= 150)
  const sizes = receiver.postsTo(path).map((p) => p.results.length)
  t.equal(total(), 150)
  t.ok(
    sizes.every((n) => n <= 100),
    `every POST carries at most 100 (${sizes.join(', ')})`,
  )
  t.equal(Math.max(...sizes), 100, 'reports due together share POSTs')
})

t.test('a failed report POST is retried with the same body', async (t) => {
  const path = '/dlr/retry'
  await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'retry-1', receiver.url(path))))
  await waitFor('the retried report', () => receiver.reportsFor('retry-1').length === 1)
  const attempts = receiver.received.filter((r) => r.path === path)
  t.same(
    attempts.map((a) => a.status),
    [500, 200],
  )
  t.equal(attempts[1]!.raw, attempts[0]!.raw)
  t.ok(attempts[1]!.at - attempts[0]!.at >= 150, 'the first retry waits 100 ms × (1 + 1²)')
  const stats = (await call('GET', `${base}/_sim/stats`, undefined, null)).body
  t.ok(stats.reportPostsFailed >= 1)
  t.equal(stats.reportsDropped, 0)
  await waitFor('reportsPosted = 1', async () => (await sim('retry-1')).body.reportsPosted === 1)
})

t.test('logs: by messageId and bulkId, with limit; PENDING_ACCEPTED before any report', async (t) => {
  const { base } = await startSimulator(t, { SIM_DLR_DELAY_MS: '60000' }) // no report within this test
  const body = {
    messages: ['1', '2', '3'].map((n) => v3Message(`4179302672${n}`, `logs-${n}`, 'http://127.0.0.1:9/never')),
    options: { schedule: { bulkId: 'logs-bulk' } },
  }
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 200)
  await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793000006', 'logs-refused', undefined)))

  const byId = await call('GET', `${base}/sms/3/logs?messageId=logs-1,logs-3,unknown,logs-refused`)
  t.equal(byId.status, 200)
  t.same(
    byId.body.results.map((r: Json) => r.messageId),
    ['logs-1', 'logs-3'],
    'unknown and never-accepted ids are absent',
  )
  t.same(byId.body.cursor, { limit: 50 })
  const [entry] = byId.body.results
  t.same(Object.keys(entry).sort(), ['bulkId', 'destination', 'error', 'messageCount', 'messageId', 'price', 'sender', 'sentAt', 'status'])
  t.match(entry, { sender: 'TestSender', destination: '41793026721', bulkId: 'logs-bulk', sentAt: INFOBIP_TIME, messageCount: 1 })
  t.same(entry.status, PENDING_ACCEPTED)
  t.same(entry.error, NO_ERROR)

  const byBulk = await call('GET', `${base}/sms/3/logs?bulkId=logs-bulk&limit=2`)
  t.equal(byBulk.body.results.length, 2)
  t.same(byBulk.body.cursor, { limit: 2 })
  t.equal((await call('GET', `${base}/sms/3/logs?limit=1001`)).status, 400)
})

t.test('logs: messageId repeated, as Infobip’s SDKs send it, comma-separated, or both', async (t) => {
  const { base } = await startSimulator(t, { SIM_DLR_DELAY_MS: '60000' })
  const body = {
    messages: ['1', '2', '3'].map((n) => v3Message(`4179302672${n}`, `rep-${n}`, undefined)),
    options: { schedule: { bulkId: 'rep-bulk' } },
  }
  t.equal((await call('POST', `${base}/sms/3/messages`, body)).status, 200)
  const ids = async (query: string) => {
    const res = await call('GET', `${base}/sms/3/logs?${query}`)
    t.equal(res.status, 200, query)
    return res.body.results.map((r: Json) => r.messageId)
  }
  t.same(await ids('messageId=rep-1&messageId=rep-3'), ['rep-1', 'rep-3'])
  t.same(await ids('messageId=rep-1,rep-2&messageId=rep-3&messageId=unknown'), ['rep-1', 'rep-2', 'rep-3'])
  t.same(await ids('messageId=rep-2&messageId=rep-2&limit=10'), ['rep-2'], 'a repeated id is one result')
  t.same(await ids('messageId=rep-3'), ['rep-3'])
  t.same(await ids('bulkId=other&bulkId=rep-bulk&limit=1'), ['rep-3'])
})

t.test('SIM_LOGS_LAG_MS: an accepted message shows in the logs only after the lag', async (t) => {
  const { base } = await startSimulator(t, { SIM_LOGS_LAG_MS: '400', SIM_DLR_DELAY_MS: '60000' })
  const started = Date.now()
  t.equal((await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'lag-1', undefined)))).status, 200)
  t.match((await call('GET', `${base}/_sim/messages/lag-1`, undefined, null)).body, { accepted: 1 }, 'accepted at once')
  t.same((await call('GET', `${base}/sms/3/logs?messageId=lag-1`)).body.results, [], 'not in the logs yet')
  const [entry] = await waitFor('the log entry', async () => {
    const { results } = (await call('GET', `${base}/sms/3/logs?messageId=lag-1`)).body
    return results.length > 0 && results
  })
  t.ok(Date.now() - started >= 400, 'not before the lag')
  t.same(entry.status, PENDING_ACCEPTED)
})

t.test('logs allow 120 calls a minute', async (t) => {
  const { base } = await startSimulator(t)
  // 120 calls minus the one refused with limit=1001 below would blur the count: every call here is valid.
  for (let i = 0; i < 120; i++) t.equal((await call('GET', `${base}/sms/3/logs?messageId=x`)).status, 200, `call ${i + 1}`, { diagnostic: false })
  const refused = await call('GET', `${base}/sms/3/logs?messageId=x`)
  t.equal(refused.status, 429)
  t.match(refused.body, v3ErrorShape('E429'))
  t.ok(Number(refused.headers['retry-after']) >= 1)
})

t.test('SIM_LATENCY_MS: messages are accepted before the delayed answer', async (t) => {
  const { base } = await startSimulator(t, { SIM_LATENCY_MS: '1500' })
  const started = Date.now()
  const killed = request(`${base}/sms/3/messages`, {
    method: 'POST',
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(v3Body(v3Message('41793026727', 'latency-killed', undefined))),
    signal: AbortSignal.timeout(100),
  })
  await t.rejects(killed, 'the client gave up waiting')
  await waitFor('the acceptance', async () => (await call('GET', `${base}/_sim/messages/latency-killed`, undefined, null)).body?.accepted === 1)
  t.ok(Date.now() - started < 1500, 'accepted before the answer was due')

  const before = Date.now()
  const res = await call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', 'latency-waited', undefined)))
  t.equal(res.status, 200)
  t.ok(Date.now() - before >= 1400, 'the answer waited SIM_LATENCY_MS')
})

t.test('SIM_FAILURE_RATE=1: every submission answers 500 or never answers', async (t) => {
  const { base } = await startSimulator(t, { SIM_FAILURE_RATE: '1' })
  const sink = await startReceiver(t)
  const outcomes: Record<string, string[]> = { error: [], timeout: [] }
  for (let i = 0; i < 4; i++) {
    const messageId = `failure-${i}`
    try {
      const res = await request(`${base}/sms/3/messages`, {
        method: 'POST',
        headers: { authorization: AUTH, 'content-type': 'application/json' },
        body: JSON.stringify(v3Body(v3Message('41793026727', messageId, sink.url('/dlr/failure')))),
        signal: AbortSignal.timeout(500),
      })
      t.equal(res.statusCode, 500)
      t.match(await res.body.json(), v3ErrorShape('E500'))
      outcomes.error!.push(messageId)
    } catch {
      outcomes.timeout!.push(messageId)
    }
  }
  t.equal(outcomes.error!.length, 2, 'half answer 500')
  t.equal(outcomes.timeout!.length, 2, 'half never answer')
  for (const id of outcomes.error!) t.match((await call('GET', `${base}/_sim/messages/${id}`, undefined, null)).body, { submissions: 1, accepted: 0 })
  for (const id of outcomes.timeout!) {
    t.match((await call('GET', `${base}/_sim/messages/${id}`, undefined, null)).body, { submissions: 1, accepted: 1 }, 'a timeout was accepted')
    await waitFor(`the report of ${id}`, () => sink.reportsFor(id).length === 1)
  }
})

t.test('SIM_RATE_LIMIT_PER_SECOND: 429 with Retry-After above the rate', async (t) => {
  const { base } = await startSimulator(t, { SIM_RATE_LIMIT_PER_SECOND: '3' })
  const send = (id: string) => call('POST', `${base}/sms/3/messages`, v3Body(v3Message('41793026727', id, undefined)))
  const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => send(`rate-${i}`)))
  const limited = answers.filter((a) => a.status === 429)
  t.equal(answers.filter((a) => a.status === 200).length, 3)
  t.equal(limited.length, 5)
  for (const a of limited) {
    t.equal(a.headers['retry-after'], '1')
    t.match(a.body, v3ErrorShape('E429'))
  }
  const v2 = await call('POST', `${base}/sms/2/text/advanced`, v2Body('41793026727', 'rate-v2', 'http://127.0.0.1:9/'))
  t.equal(v2.status, 429)
  t.match(v2.body, v2ErrorShape('TOO_MANY_REQUESTS'))
  const stats = (await call('GET', `${base}/_sim/stats`, undefined, null)).body
  t.match(stats, { requests: 9, accepted: 3 })
  await waitFor('the rate to allow a request again', async () => (await send('rate-later')).status === 200, 3000)
})

t.test('Reporter: gives up after the last retry and counts the drop', async (t) => {
  const sink = await startReceiver(t, () => 500)
  const posted: unknown[] = []
  const reporter = new Reporter<{ messageId: string }>({
    log: pino({ level: 'silent' }),
    onPosted: (r) => posted.push(...r),
    windowMs: 1,
    retryUnitMs: 1,
    maxRetries: 2,
  })
  t.teardown(() => reporter.close())
  reporter.enqueue(sink.url('/dlr/drop?token=secret'), { messageId: 'drop-1' })
  await waitFor('the drop', () => reporter.counts.dropped === 1)
  t.equal(sink.received.length, 3, 'the first POST and two retries')
  t.same(reporter.counts, { posted: 0, failedPosts: 3, dropped: 1 })
  t.same(posted, [])
})

t.test('intoBatches keeps POSTs small and never repeats a report within one', async (t) => {
  const a = { id: 'a' }
  const b = { id: 'b' }
  t.same(intoBatches([a, a, b, a], 100), [[a, b], [a], [a]])
  t.same(
    intoBatches([a, b, { id: 'c' }], 2).map((batch) => batch.length),
    [2, 1],
  )
  t.equal(redactUrl('https://api.example.com/infobip-dlr?token=secret'), 'https://api.example.com/infobip-dlr')
})
