import { DEFAULT_TENANT } from '../../src/tenants.js'
import crypto from 'node:crypto'
import { once } from 'node:events'
import { syncBuiltinESMExports } from 'node:module'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { API_KEY, DLR_TOKEN } from '../helpers/index.js'
import { BEARER, Chaos, DLR_PATH, histogram, mapLimit, phone, type Stack } from './harness.js'

/**
 * Chaos 6: abuse of a running API process — oversized bodies, slow clients, a flood above the rate
 * limit, wrong credentials on every protected route — and the secret comparisons checked to be
 * constant-time by construction (hash first, then timingSafeEqual over every accepted secret).
 */

const chaos = await Chaos.start(t, 'abuse')
const DASHBOARD = { BULL_BOARD_USER: 'ops', BULL_BOARD_PASSWORD: 'dashboard-password-0123' }
/** The tests below present wrong credentials by the dozen from one address: above the default throttle (test/plugins/auth-throttle.test.ts). */
const MANY_FAILURES = { AUTH_FAILURES_PER_MINUTE: 100_000 }
const stack = await chaos.stack({ ...DASHBOARD, ...MANY_FAILURES })
const apiProc = await stack.startApi()
const api = stack.api!

/** Messages stored and dlr jobs queued: what an abusive request must not change. */
async function footprint(s: Stack = stack): Promise<string> {
  const [messages, dlr] = await Promise.all([chaos.redisClient.zcard(s.keys.created(DEFAULT_TENANT, 0)), chaos.redisClient.get(`${s.queuePrefix}:dlr:id`)])
  return `messages=${messages} dlr-jobs=${dlr ?? 0}`
}

function rawSocket(): Promise<Socket> {
  const socket = connect(stack.apiPort, '127.0.0.1')
  socket.on('error', () => {}) // the server may reset a connection we still write to
  return once(socket, 'connect').then(() => socket)
}

/**
 * Sends a body over a raw socket — `length` bytes with Content-Length, or chunked when `length` is
 * undefined (then up to `maxBytes`) — and stops as soon as the server answers; the server may close
 * the connection while the body is still coming (an HTTP client library would report only EPIPE).
 */
async function sendUntilAnswered(path: string, headers: Record<string, string>, fill: string, length: number | undefined, maxBytes = length ?? 0) {
  const socket = await rawSocket()
  let answer = ''
  socket.on('data', (d: Buffer) => (answer += d.toString()))
  const framing = length === undefined ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(length) }
  const head = Object.entries({ host: '127.0.0.1', 'content-type': 'application/json', ...framing, ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`)
  // A server that refuses on the headers alone answers before any body byte: wait for that first.
  for (let i = 0; i < 30 && !answer; i++) await sleep(10)
  const piece = fill.repeat(Math.ceil(0x10000 / fill.length)).slice(0, 0x10000)
  const chunk = length === undefined ? `10000\r\n${piece}\r\n` : piece
  const started = Date.now()
  let sent = 0
  let reset = false
  socket.once('error', () => (reset = true))
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  while (!answer && sent < maxBytes && !socket.destroyed && Date.now() - started < 30_000) {
    const part = length === undefined ? chunk : chunk.slice(0, Math.min(chunk.length, maxBytes - sent))
    if (!socket.write(part)) await Promise.race([once(socket, 'drain').catch(() => {}), ended, sleep(1000)])
    sent += length === undefined ? 0x10000 : part.length
  }
  const deadline = Date.now() + 5000
  while (!answer && Date.now() < deadline) await sleep(10)
  const closedByServer = reset || socket.destroyed
  socket.destroy()
  return { status: Number(answer.split(' ')[1]), closedByServer, sent, ms: Date.now() - started }
}

t.test('oversized bodies: 413 before they are read, nothing stored', async (t) => {
  const before = await footprint()
  const cases: [string, Record<string, string>, number, number][] = [
    ['/messages', BEARER, 64 * 1024, 65 * 1024],
    ['/messages/batch', BEARER, 4 * 1024 * 1024, 5 * 1024 * 1024],
    [DLR_PATH, {}, 4 * 1024 * 1024, 5 * 1024 * 1024],
  ]
  for (const [path, headers, limit, length] of cases) {
    const res = await sendUntilAnswered(path, headers, '{"a":"', length)
    t.equal(
      res.status,
      413,
      `${path}: ${length / 1024} KB with Content-Length (limit ${limit / 1024} KB) answered 413 after ${(res.sent / 1024).toFixed(0)} KB of the body sent`,
    )
  }
  const unauthorized = await sendUntilAnswered('/infobip-dlr', {}, '{"a":"', 5 * 1024 * 1024)
  t.equal(unauthorized.status, 401, `/infobip-dlr without a token: 401 first, after ${(unauthorized.sent / 1024).toFixed(0)} KB of the body sent`)

  // A chunked body with no length announced: cut off at the limit, not buffered to the end.
  for (const [path, headers] of [
    ['/messages/batch', BEARER],
    [DLR_PATH, {}],
  ] as const) {
    const streamed = await sendUntilAnswered(path, headers, 'a', undefined, 200 * 1024 * 1024)
    // The server answers 413 and closes with our bytes still arriving: the reset may destroy its answer before we read it.
    const how =
      streamed.status === 413 ? 'answered 413' : streamed.closedByServer ? 'closed the connection (its 413 lost to the reset)' : `answered ${streamed.status}`
    t.ok(
      streamed.status === 413 || (Number.isNaN(streamed.status) && streamed.closedByServer),
      `${path}: a 200 MB chunked body: the server ${how} after ${(streamed.sent / 1024 / 1024).toFixed(1)} MB sent, in ${streamed.ms} ms`,
    )
    t.ok(streamed.sent < 32 * 1024 * 1024, 'the server stopped reading long before the end')
  }
  t.equal(await footprint(), before, 'nothing stored')
  t.ok(apiProc.alive, 'the API is alive')
})

t.test('slow clients: a body trickled byte by byte is timed out', async (t) => {
  // The API's own timeouts, read from the app as src/app.ts builds it.
  const app = await buildApp(loadConfig(stack.env), { logger: false })
  const server = app.server as typeof app.server & { connectionsCheckingInterval?: number }
  const { requestTimeout, headersTimeout } = server
  const checking = server.connectionsCheckingInterval ?? 30_000
  await app.close()
  // Node checks every connectionsCheckingInterval, and applies the larger of the two timeouts to the body.
  const deadline = requestTimeout > 0 ? Math.max(requestTimeout, headersTimeout) + checking : Infinity
  t.comment(
    `API: requestTimeout=${requestTimeout} ms, headersTimeout=${headersTimeout} ms, connectionsCheckingInterval=${checking} ms → a trickled body is cut after at most ${deadline} ms`,
  )

  // Many slow clients at once do not keep others waiting.
  const slow = await Promise.all(Array.from({ length: 50 }, () => rawSocket()))
  for (const socket of slow)
    socket.write(
      `POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"to":"`,
    )
  const started = Date.now()
  const res = await api.post('/messages', { to: phone('2345'), text: 'while 50 clients trickle' }, BEARER)
  t.equal(res.status, 202, `a normal request is answered (${Date.now() - started} ms) while 50 slow clients hold connections`)

  // One of them keeps trickling a byte every 500 ms: does the server ever cut it off?
  const bound = Math.min(deadline + 5000, 45_000)
  const trickler = slow[0]!
  let answer = ''
  trickler.on('data', (d: Buffer) => (answer += d.toString()))
  const closed = once(trickler, 'close').then(() => Date.now() - started)
  const timer = setInterval(() => trickler.write('1'), 500)
  const closedAfter = await Promise.race([closed, sleep(deadline === Infinity ? 6000 : bound).then(() => undefined)])
  clearInterval(timer)
  for (const socket of slow) socket.destroy()
  const measured =
    closedAfter === undefined ? `still open after ${Date.now() - started} ms` : `closed after ${closedAfter} ms (${answer.split('\r\n')[0] || 'no answer'})`
  t.comment(`trickled body: ${measured}`)
  if (requestTimeout === 0) {
    t.fail(`the server never times a trickled body out (${measured})`)
  } else if (deadline <= 40_000) t.ok(closedAfter !== undefined && closedAfter <= bound, `the server timed the request out: ${measured}`)
  else t.pass(`a timeout is configured; cutting a trickled body takes up to ${deadline} ms, too long to wait for here`)
  t.equal((await api.get('/health')).status, 200, 'the API still answers')
})

t.test('a flood above the rate limit: 429 with Retry-After, exactly the budget gets through, per key', async (t) => {
  const LIMIT = 60
  const limited = await chaos.stack({ RATE_LIMIT_PER_MINUTE: LIMIT })
  await limited.startApi()
  const flood = await mapLimit(
    Array.from({ length: 150 }, (_, i) => i),
    25,
    () => limited.api!.get('/messages/msg_flood', BEARER),
  )
  const statuses = histogram(flood.map((r) => r.status))
  t.same(statuses, { 404: LIMIT, 429: 150 - LIMIT }, `150 requests, ${LIMIT} a minute allowed: ${JSON.stringify(statuses)}`)
  const refused = flood.find((r) => r.status === 429)!
  t.ok(Number(refused.headers['retry-after']) > 0, `Retry-After: ${String(refused.headers['retry-after'])}`)
  t.equal(refused.headers['x-ratelimit-limit'], String(LIMIT))
  t.equal(refused.json().statusCode, 429)
  const post = await limited.api!.post('/messages', { to: phone('2345'), text: 'over the limit' }, BEARER)
  t.equal(post.status, 429, 'POST counts against the same budget and stores nothing')
  t.equal(await footprint(limited), 'messages=0 dlr-jobs=0')
  const other = await limited.api!.get('/messages/msg_flood', { authorization: 'Bearer second-key-0123456789' })
  t.equal(other.status, 429, 'another API key of the same tenant shares its budget')
  // Requests with a wrong key are not the tenant's: the failed-authentication limit per address takes them.
  const guesses = await mapLimit(
    Array.from({ length: 100 }, (_, i) => i),
    25,
    (i) => limited.api!.get('/messages/msg_flood', { authorization: `Bearer guess-${i}` }),
  )
  t.comment(
    `100 requests with wrong keys: ${JSON.stringify(histogram(guesses.map((r) => r.status)))} (401 until the failed-authentication limit of the address, then 429)`,
  )
})

t.test('wrong credentials on every protected route: 401, nothing stored', async (t) => {
  const before = await footprint()
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  const wrongBearer: Record<string, string>[] = [
    {},
    { authorization: 'Bearer wrong' },
    { authorization: `Bearer ${API_KEY}x` },
    { authorization: `Bearer ${API_KEY.slice(0, -1)}` },
    { authorization: `bearer  ${API_KEY}` },
    { authorization: basic('x', API_KEY) },
    { authorization: `Bearer ${DLR_TOKEN}` },
  ]
  const body = JSON.stringify({ to: '+41793026727', text: 'hi' })
  const routes: [method: 'GET' | 'POST', path: string, body?: string][] = [
    ['POST', '/messages', body],
    ['POST', '/messages/batch', JSON.stringify({ messages: [JSON.parse(body)] })],
    ['GET', '/messages'],
    ['GET', '/messages/msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F'],
    ['POST', '/callbacks/msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F-2/replay', '{}'],
  ]
  const answers: string[] = []
  for (const [method, path, payload] of routes) {
    for (const headers of wrongBearer) {
      const res = await api.request(method, path, {
        headers: { ...headers, ...(payload ? { 'content-type': 'application/json' } : {}) },
        ...(payload ? { body: payload } : {}),
      })
      if (res.status !== 401) answers.push(`${method} ${path} ${JSON.stringify(headers)} → ${res.status}`)
    }
  }
  const reports = JSON.stringify({ results: [] })
  const dlr: [string, Record<string, string>][] = [
    ['/infobip-dlr', {}],
    ['/infobip-dlr?token=', {}],
    ['/infobip-dlr?token=wrong', {}],
    [`/infobip-dlr?token=${DLR_TOKEN}x`, {}],
    [`/infobip-dlr?token=${DLR_TOKEN.slice(0, -1)}`, {}],
    [`/infobip-dlr?token=${API_KEY}`, {}],
    ['/infobip-dlr', { 'x-webhook-token': 'wrong' }],
    ['/infobip-dlr', { authorization: basic('infobip', 'wrong') }],
    ['/infobip-dlr', { authorization: `Bearer ${DLR_TOKEN}` }],
    ['/infobip-dlr?token[]=x', {}],
  ]
  for (const [path, headers] of dlr) {
    const res = await api.request('POST', path, { body: reports, headers: { ...headers, 'content-type': 'application/json' } })
    if (res.status !== 401) answers.push(`POST ${path} ${JSON.stringify(headers)} → ${res.status}`)
  }
  const dashboard: Record<string, string>[] = [
    {},
    { authorization: basic('ops', 'wrong') },
    { authorization: basic('wrong', DASHBOARD.BULL_BOARD_PASSWORD) },
    { authorization: `Bearer ${API_KEY}` },
    { authorization: basic('ops', `${DASHBOARD.BULL_BOARD_PASSWORD}x`) },
  ]
  for (const path of ['/admin/queues', '/admin/queues/api/queues', '/admin/queues/static/index.js']) {
    for (const headers of dashboard) {
      const res = await api.request('GET', path, { headers })
      if (res.status !== 401) answers.push(`GET ${path} ${JSON.stringify(headers)} → ${res.status}`)
    }
  }
  t.same(answers, [], `every wrong credential answered 401 (${routes.length * wrongBearer.length + dlr.length + 3 * dashboard.length} requests)`)
  t.equal(await footprint(), before, 'nothing stored')

  // And the right credentials do get through, so the 401s above were about the credentials.
  for (const [method, path, payload] of routes) {
    const right = await api.request(method, path, {
      headers: { ...BEARER, ...(payload ? { 'content-type': 'application/json' } : {}) },
      ...(payload ? { body: payload } : {}),
    })
    t.not(right.status, 401, `${method} ${path} with the right key: ${right.status}`)
  }
  t.equal(
    (await api.request('POST', DLR_PATH, { body: reports, headers: { 'content-type': 'application/json' } })).status,
    200,
    '/infobip-dlr with the token: 200',
  )
  const ok = await api.request('GET', '/admin/queues/api/queues', {
    headers: { authorization: basic(DASHBOARD.BULL_BOARD_USER, DASHBOARD.BULL_BOARD_PASSWORD) },
  })
  t.equal(ok.status, 200, 'the dashboard with the right credentials: 200')
})

t.test('secrets are compared in constant time by construction: hashed, then timingSafeEqual over every accepted one', async (t) => {
  // Spies on the real functions: node:crypto's live ESM bindings follow its CommonJS exports.
  const real = { timingSafeEqual: crypto.timingSafeEqual, createHash: crypto.createHash }
  let compared: [number, number][] = []
  let hashed: string[] = []
  crypto.timingSafeEqual = (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    compared.push([a.byteLength, b.byteLength])
    return real.timingSafeEqual(a, b)
  }
  crypto.createHash = (algorithm: string, options?: crypto.HashOptions) => {
    const hash = real.createHash(algorithm, options)
    const update = hash.update.bind(hash)
    hash.update = (data: string | NodeJS.ArrayBufferView, encoding?: crypto.Encoding) => {
      if (algorithm === 'sha256') hashed.push(typeof data === 'string' ? data : Buffer.from(data as Uint8Array).toString())
      return encoding ? update(data as string, encoding) : update(data)
    }
    return hash
  }
  syncBuiltinESMExports()
  t.teardown(() => {
    Object.assign(crypto, real)
    syncBuiltinESMExports()
  })

  const app = await buildApp(loadConfig(stack.env), { logger: false })
  t.teardown(() => app.close())
  const reports = { results: [] }
  const presented = ['', 'x', DLR_TOKEN.slice(0, -1), `${DLR_TOKEN}x`, DLR_TOKEN.replace(/.$/, 'X'), 'y'.repeat(10_000), DLR_TOKEN]
  for (const token of presented) {
    for (const [where, request] of [
      ['query', { url: `/infobip-dlr?token=${encodeURIComponent(token)}` }],
      ['header', { url: '/infobip-dlr', headers: { 'x-webhook-token': token } }],
      ['basic', { url: '/infobip-dlr', headers: { authorization: `Basic ${Buffer.from(`infobip:${token}`).toString('base64')}` } }],
    ] as const) {
      compared = []
      hashed = []
      const res = await app.inject({
        method: 'POST',
        payload: reports,
        ...request,
        headers: { 'content-type': 'application/json', ...('headers' in request ? request.headers : {}) },
      })
      const label = `DLR token of ${token.length} chars in the ${where}`
      t.equal(res.statusCode, token === DLR_TOKEN ? 200 : 401, `${label}: ${res.statusCode}`)
      if (token === '') continue // nothing presented: nothing to compare
      t.ok(hashed.includes(token), `${label}: hashed (sha256) before any comparison`)
      t.same(compared, [[32, 32]], `${label}: one timingSafeEqual of two 32-byte digests, whatever its length or content`)
    }
  }

  // API keys the same way: every accepted key compared, whichever matched.
  for (const key of ['wrong', API_KEY, 'second-key-0123456789', 'z'.repeat(5000)]) {
    compared = []
    await app.inject({ method: 'GET', url: '/messages/msg_x', headers: { authorization: `Bearer ${key}` } })
    t.same(
      compared,
      [
        [32, 32],
        [32, 32],
      ],
      `API key of ${key.length} chars: compared with both accepted keys, 32-byte digests`,
    )
  }
})
