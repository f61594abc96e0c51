import { createServer } from 'node:http'
import { once } from 'node:events'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { Message } from '../../src/domain/message.js'
import { startWorkers } from '../../workers/start.js'
import { AUTH, buildTestApp, cleanup, spawnWorker, startSimulator, testConfig, testEnv, waitFor, workerReady } from '../helpers/index.js'

const silent = pino({ level: 'silent' })

/** API + simulator + in-process workers, all with one KEY_PREFIX. */
async function system(t: Test, env: Record<string, string | number> = {}, infobipUrl?: string) {
  const sim = infobipUrl ? undefined : await startSimulator(t, testConfig('sim', env))
  const config = testConfig('send', { INFOBIP_BASE_URL: infobipUrl ?? sim!.url, ...env })
  const app = await buildTestApp(t, config)
  const workers = await startWorkers({ ...config, WORKER_QUEUES: 'send' }, silent)
  t.teardown(async () => {
    await workers.close()
    await cleanup(config.KEY_PREFIX)
  })
  const send = async (to: string, text = 'hello') => {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to, text } })
    if (res.statusCode !== 202) throw new Error(`POST /messages answered ${res.statusCode}: ${res.body}`)
    return res.json().id as string
  }
  const get = async (id: string) => (await app.store.get(id))!
  const until = (id: string, status: string, timeoutMs = 10_000) =>
    waitFor(
      async () => {
        const m = await get(id)
        return m.status === status ? m : undefined
      },
      timeoutMs,
      `${id} to be ${status}`,
    )
  const simMessage = async (id: string) => (await fetch(`${sim!.url}/_sim/messages/${id}`)).json() as Promise<{ submissions: number; accepted: number }>
  return { app, config, sim, send, get, until, simMessage }
}

t.test('accepted: PENDING with attempts and infobip.* recorded (v3 request as docs/infobip.md#sending-with-v3 shows)', async (t) => {
  const { send, until, simMessage } = await system(t)
  const id = await send('+41 79 302 67 27')
  const m = await until(id, 'PENDING')
  t.equal(m.attempts, 1)
  t.match(m.infobip, { messageId: id, status: { groupId: 1, id: 26, name: 'PENDING_ACCEPTED' }, messageCount: 1 })
  t.match(m.events, [
    { status: 'QUEUED', source: 'api' },
    { seq: 2, status: 'PENDING', source: 'send', infobipStatus: 'PENDING_ACCEPTED' },
  ])
  t.match(await simMessage(id), { submissions: 1, accepted: 1 })
})

t.test('0004: 500 twice, then accepted on the third attempt', async (t) => {
  const { send, until } = await system(t)
  const id = await send('+41793020004')
  const m = await until(id, 'PENDING')
  t.equal(m.attempts, 3)
})

t.test('0004 with SEND_MAX_ATTEMPTS=2: FAILED with RETRIES_EXHAUSTED', async (t) => {
  const { send, until } = await system(t, { SEND_MAX_ATTEMPTS: 2 })
  const id = await send('+41793020004')
  const m = await until(id, 'FAILED')
  t.equal(m.attempts, 2)
  t.equal(m.error?.code, 'RETRIES_EXHAUSTED')
  t.ok(m.final)
})

t.test('0005: a 429 waits Retry-After without using up an attempt', async (t) => {
  // With a single attempt allowed, the message can only be sent if the 429 did not count.
  const { send, until } = await system(t, { SEND_MAX_ATTEMPTS: 1 })
  const started = Date.now()
  const id = await send('+41793020005')
  const m = await until(id, 'PENDING')
  t.equal(m.attempts, 2, 'both submissions counted in attempts')
  t.ok(Date.now() - started >= 900, 'waited for Retry-After: 1')
})

t.test('0006: a 400 fails at once with Infobip’s own error text', async (t) => {
  const { send, until, simMessage } = await system(t)
  const id = await send('+41793020006')
  const m = await until(id, 'FAILED')
  t.equal(m.attempts, 1)
  t.equal(m.error?.code, 'INFOBIP_4XX')
  t.match(m.error?.message, /^Infobip answered 400: \S+/)
  t.equal((await simMessage(id)).submissions, 1, 'not retried')
})

t.test('v2: the same outcomes through /sms/2/text/advanced', async (t) => {
  const { send, until } = await system(t, { INFOBIP_API: 'v2' })
  const ok = await send('+41793026727')
  const bad = await send('+41793020006')
  t.match((await until(ok, 'PENDING')).infobip, { messageId: ok, status: { name: 'PENDING_ACCEPTED' } })
  t.equal((await until(bad, 'FAILED')).error?.code, 'INFOBIP_4XX')
})

t.test('a batch reaches Infobip in requests of up to 100; a 400 in one is retried message by message', async (t) => {
  const { app, sim, until, get } = await system(t)
  const statsBefore = (await (await fetch(`${sim!.url}/_sim/stats`)).json()) as { requests: number }
  const messages = Array.from({ length: 250 }, (_, i) => ({ to: `+4179302${String(1000 + i)}`, text: `m${i}` }))
  messages[120] = { to: '+41793020006', text: 'refused' }
  const res = await app.inject({ method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages } })
  t.equal(res.statusCode, 202)
  const ids = (res.json().messages as Message[]).map((m) => m.id)
  await until(ids[120]!, 'FAILED')
  await waitFor(async () => (await Promise.all(ids.map(get))).every((m) => m.status !== 'QUEUED'), 10_000, 'all submitted')
  const all = await Promise.all(ids.map(get))
  t.equal(all.filter((m) => m.status === 'PENDING').length, 249)
  t.equal(all[120]!.error?.code, 'INFOBIP_4XX')
  const stats = (await (await fetch(`${sim!.url}/_sim/stats`)).json()) as { requests: number }
  // 3 requests (100, 100, 50) + the refused request's 100 retried alone.
  t.equal(stats.requests - statsBefore.requests, 3 + 100)
})

t.test('a per-destination REJECTED answer ends REJECTED; REJECTED_SYSTEM_ERROR is retried', async (t) => {
  // The simulator never rejects in its send answer: a small Infobip stand-in over real HTTP does.
  const seen = new Map<string, number>()
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      const { messages } = JSON.parse(body) as { messages: { destinations: { to: string; messageId: string }[] }[] }
      const answer = messages.map(({ destinations: [d] }) => {
        const calls = (seen.get(d!.messageId) ?? 0) + 1
        seen.set(d!.messageId, calls)
        const rejected = d!.to.endsWith('1111') || (d!.to.endsWith('2222') && calls === 1)
        const status = rejected
          ? {
              groupId: 5,
              groupName: 'REJECTED',
              id: d!.to.endsWith('1111') ? 12 : 21,
              name: d!.to.endsWith('1111') ? 'REJECTED_NOT_ENOUGH_CREDITS' : 'REJECTED_SYSTEM_ERROR',
            }
          : { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED' }
        return { messageId: d!.messageId, destination: d!.to, status }
      })
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bulkId: 'b1', messages: answer }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const { send, until } = await system(t, {}, `http://127.0.0.1:${(server.address() as { port: number }).port}`)
  const rejected = await send('+41793021111')
  const m = await until(rejected, 'REJECTED')
  t.match(m.infobip, { status: { id: 12 } })
  t.match(m.events, [{ status: 'QUEUED' }, { status: 'REJECTED', source: 'send', infobipStatus: 'REJECTED_NOT_ENOUGH_CREDITS' }])
  const retried = await send('+41793022222')
  t.equal((await until(retried, 'PENDING')).attempts, 2)
})

t.test('a second job for a message another job is submitting leaves it to that job', async (t) => {
  // Infobip's logs lag behind its answers; the simulator's never do. A stand-in over real HTTP answers
  // after 1.5 s and whose logs do not know the message yet: a second job that looked it up would
  // submit it again.
  const submissions = new Map<string, number>()
  let lookups = 0
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      if (req.method === 'GET') {
        lookups++
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results: [] }))
      }
      const { messages } = JSON.parse(body) as { messages: { destinations: { to: string; messageId: string }[] }[] }
      const answer = messages.map(({ destinations: [d] }) => {
        submissions.set(d!.messageId, (submissions.get(d!.messageId) ?? 0) + 1)
        return { messageId: d!.messageId, destination: d!.to, status: { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED' } }
      })
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bulkId: 'b1', messages: answer })), 1500)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const { app, send, until } = await system(t, {}, `http://127.0.0.1:${(server.address() as { port: number }).port}`)
  const id = await send('+41793026727')
  await waitFor(async () => submissions.get(id) === 1 || undefined, 5000, 'the first submission')
  // As the outbox sweeper can add after a Redis outage: a second job for the same message.
  await app.queues.send.add('send', { ids: [id] }, { jobId: `second-${id}` })
  await waitFor(async () => (await (await app.queues.send.getJob(`second-${id}`))?.isCompleted()) || undefined, 5000, 'the second job')
  const m = await until(id, 'PENDING')
  t.equal(submissions.get(id), 1, 'Infobip received it once')
  t.equal(lookups, 0, 'the second job did not look it up: the first was submitting it')
  t.equal(m.attempts, 1)
})

t.test('SEND_RATE_LIMIT_PER_SECOND caps submissions across worker processes', async (t) => {
  const { app, sim, config, get } = await system(t, { SEND_RATE_LIMIT_PER_SECOND: 10 })
  // A second worker process on the same queue shares the budget.
  const other = spawnWorker(
    t,
    testEnv('send', { KEY_PREFIX: config.KEY_PREFIX, INFOBIP_BASE_URL: sim!.url, WORKER_QUEUES: 'send', SEND_RATE_LIMIT_PER_SECOND: 10, LOG_LEVEL: 'info' }),
  )
  await workerReady(other)
  const started = Date.now()
  const ids: string[] = []
  for (let i = 0; i < 30; i++) {
    const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: `m${i}` } })
    ids.push(res.json().id as string)
  }
  await waitFor(async () => (await Promise.all(ids.map(get))).every((m) => m.status === 'PENDING'), 15_000, 'all submitted')
  // 30 submissions at 10 per second need three one-second windows: more than one second.
  t.ok(Date.now() - started > 1000, `took ${Date.now() - started} ms`)
  // Recorded once Infobip answered, a window's submissions can spill into the next second: any k
  // consecutive seconds hold at most k + 1 windows' budget (without the cap, all 30 land in one).
  const seconds = (await Promise.all(ids.map(get))).map((m) => Math.floor(Date.parse(m.events[1]!.at) / 1000))
  const first = Math.min(...seconds)
  const counts = Array.from({ length: Math.max(...seconds) - first + 1 }, (_, i) => seconds.filter((s) => s === first + i).length)
  for (let from = 0; from < counts.length; from++) {
    for (let to = from; to < counts.length; to++) {
      const span = counts.slice(from, to + 1).reduce((a, b) => a + b, 0)
      if (span > (to - from + 2) * 10) t.fail(`${span} accepted in ${to - from + 1} s: ${counts.join(',')}`)
    }
  }
  t.ok(counts.length >= 2, `accepted per second: ${counts.join(',')}`)
})

t.test('a worker killed after Infobip accepted a message: the message is not submitted twice', async (t) => {
  const simEnv = { SIM_LATENCY_MS: 2500 }
  const sim = await startSimulator(t, testConfig('sim', simEnv))
  const env = testEnv('kill', { INFOBIP_BASE_URL: sim.url, WORKER_QUEUES: 'send', JOB_LOCK_MS: 1000, LOG_LEVEL: 'info' })
  const config = testConfig('kill', env)
  const app = await buildTestApp(t, config)
  const first = spawnWorker(t, env)
  await workerReady(first)
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to: '+41793026727', text: 'exactly once' } })
  const id = res.json().id as string
  // Infobip has accepted it; its answer is still on the way (SIM_LATENCY_MS).
  await waitFor(async () => ((await (await fetch(`${sim.url}/_sim/messages/${id}`)).json()) as { accepted?: number }).accepted === 1, 5000, 'accepted')
  first.kill('SIGKILL')
  await once(first, 'exit')
  t.equal((await app.store.get(id))!.status, 'QUEUED', 'the worker died before recording the answer')

  const second = spawnWorker(t, env)
  await workerReady(second)
  const m = await waitFor(
    async () => {
      const m = await app.store.get(id)
      return m && m.status !== 'QUEUED' ? m : undefined
    },
    20_000,
    'PENDING or beyond after the restart',
  ).catch(async (error) => {
    t.comment((second as unknown as { output: string }).output)
    t.comment(JSON.stringify(await app.store.get(id)))
    throw error
  })
  const seen = (await (await fetch(`${sim.url}/_sim/messages/${id}`)).json()) as { submissions: number }
  t.equal(seen.submissions, 1, 'Infobip received it once')
  t.equal(m.attempts, 1)
  // What Infobip's logs knew by then: accepted, or already delivered.
  t.ok(['PENDING', 'DELIVERED'].includes(m.status), m.status)
  t.match(m.infobip, { messageId: id, status: { groupId: m.status === 'PENDING' ? 1 : 3 } })
})
