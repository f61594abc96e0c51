import { QueueEvents } from 'bullmq'
import t from 'tap'
import { isFinal, RANK, type Status } from '../../src/domain/status.js'
import { parseReport } from '../../src/domain/reports.js'
import type { Message } from '../../src/domain/message.js'
import { random, shuffle, STATUSES, v2Report, v3Report } from '../helpers/reports.js'
import { BEARER, Chaos, DLR_PATH, histogram, mapLimit, ordinary, phone } from './harness.js'
import { waitFor } from '../helpers/index.js'

/**
 * Chaos 1: worker processes SIGKILLed in the middle of their work.
 *  - send: 2,000 messages accepted by the simulator, its answers still on the way (SIM_LATENCY_MS),
 *    when one of two send workers is killed; a replacement starts, the survivors take the dead
 *    worker's jobs over once their locks expire (JOB_LOCK_MS = 2 s).
 *  - dlr: one of two dlr workers killed while 20,000 reports are being applied.
 * What Infobip (the simulator) received is counted per message.
 */

const chaos = await Chaos.start(t, 'crash')
const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000)
t.comment(`seed ${seed} (CHAOS_SEED=${seed} replays the shuffles)`)

/** Numbers whose simulator behaviour ends elsewhere than DELIVERED, mixed in every 20th message. */
const SPECIAL: [string, Status][] = [
  ['0001', 'UNDELIVERABLE'],
  ['0002', 'EXPIRED'],
  ['0003', 'REJECTED'],
  ['0007', 'DELIVERED'], // the final report POSTed three times
]

t.test('send: a send worker SIGKILLed with 2,000 messages in flight; every message PENDING or beyond, final, accepted by Infobip once', async (t) => {
  const MESSAGES = 2000
  const SINGLES = 40
  const stack = await chaos.stack({ SIM_LATENCY_MS: 4000, SIM_DLR_DELAY_MS: 12_000, JOB_LOCK_MS: 2000, SEND_CONCURRENCY: 100, SEND_BACKOFF_MS: 200 })
  await Promise.all([stack.simulator(), stack.startApi(), stack.worker('dlr')])
  const api = stack.api!

  // Stored and queued first, so that the workers find every job waiting.
  const expected = new Map<string, Status>()
  const bodies = Array.from({ length: MESSAGES }, (_, i) => {
    const special = i % 20 === 19 ? SPECIAL[Math.floor(i / 20) % SPECIAL.length]! : undefined
    return { to: phone(special ? special[0] : ordinary(i)), text: `crash ${i}`, final: special ? special[1] : 'DELIVERED' }
  })
  const batched = bodies.slice(0, MESSAGES - SINGLES)
  for (const part of [batched.slice(0, batched.length / 2), batched.slice(batched.length / 2)]) {
    const res = await api.post('/messages/batch', { messages: part.map(({ to, text }) => ({ to, text })) }, BEARER)
    t.equal(res.status, 202, 'batch accepted')
    res.json<{ messages: Message[] }>().messages.forEach((m, i) => expected.set(m.id, part[i]!.final))
  }
  await mapLimit(bodies.slice(MESSAGES - SINGLES), 10, async ({ to, text, final }) => {
    const res = await api.post('/messages', { to, text }, BEARER)
    if (res.status !== 202) throw new Error(`POST /messages answered ${res.status}`)
    expected.set(res.json<Message>().id, final)
  })
  const ids = [...expected.keys()]
  t.equal(ids.length, MESSAGES, `${MESSAGES} messages acknowledged with 202`)

  // The victim starts first and takes 40 jobs (the 19 batch jobs first); the survivor takes the rest.
  const victim = await stack.worker('send', { SEND_CONCURRENCY: 40 })
  const starting = stack.worker('send')

  // Kill while the simulator holds its answers: accepted by "Infobip", not yet recorded by us.
  const stats = async () => (await stack.sim!.get('/_sim/stats')).json<{ accepted: number; requests: number }>()
  const atKill = await waitFor(
    async () => {
      const s = await stats()
      return s.accepted >= MESSAGES / 2 ? s : undefined
    },
    60_000,
    'half of the messages accepted by the simulator',
    20,
  )
  await victim.kill('SIGKILL')
  const killedAt = Date.now()
  const queuedAtKill = (await stack.statusCounts()).QUEUED
  t.comment(`killed a send worker: the simulator had accepted ${atKill.accepted} messages; ${queuedAtKill} were still QUEUED in Redis`)
  const [survivor, replacement] = await Promise.all([starting, stack.worker('send')])

  await waitFor(async () => (await stack.statusCounts()).QUEUED === 0 || undefined, 90_000, 'every message PENDING or beyond', 250)
  const takeoverMs = Date.now() - killedAt
  await waitFor(
    async () => {
      const counts = await stack.statusCounts()
      return counts.DELIVERED + counts.UNDELIVERABLE + counts.EXPIRED + counts.REJECTED + counts.FAILED === MESSAGES || undefined
    },
    90_000,
    'every message final',
    250,
  )

  const messages = (await stack.store.getMany(ids)) as Message[]
  const wrong = messages.filter((m) => m.status !== expected.get(m.id))
  t.equal(
    wrong.length,
    0,
    `every message reached its final status (wrong: ${JSON.stringify(wrong.slice(0, 3).map((m) => [m.id, m.status, expected.get(m.id)]))})`,
  )
  t.ok(
    messages.every((m) => m.events.every((e, i) => i === 0 || RANK[e.status] > RANK[m.events[i - 1]!.status])),
    'events only move forward',
  )

  const seen = await stack.simMessages(ids)
  const accepted = seen.map((s) => s?.accepted ?? 0)
  const submissions = seen.map((s) => s?.submissions ?? 0)
  const twice = accepted.filter((n) => n > 1).length
  t.equal(accepted.filter((n) => n === 0).length, 0, 'Infobip accepted every message')
  t.equal(twice, 0, `no message accepted twice by Infobip (accepted per message: ${JSON.stringify(histogram(accepted))})`)
  t.equal(submissions.filter((n) => n > 1).length, 0, `no message submitted twice (submissions per message: ${JSON.stringify(histogram(submissions))})`)

  // How the dead worker's messages were resolved: looked up in Infobip's logs instead of resubmitted.
  const lookups = [survivor, replacement].flatMap((w) => w.logged<{ found: number; resubmit: number }>('looked up messages with an unknown submission outcome'))
  const found = lookups.reduce((n, l) => n + l.found, 0)
  const resubmitted = lookups.reduce((n, l) => n + l.resubmit, 0)
  t.ok(
    found > 0,
    `the kill hit the window: ${found} messages accepted by Infobip but unrecorded were found in its logs (${lookups.length} lookups), ${resubmitted} unknown to Infobip were submitted again`,
  )
  t.comment(
    `send crash: ${MESSAGES} messages, all PENDING or beyond ${takeoverMs} ms after the kill; attempts per message ${JSON.stringify(histogram(messages.map((m) => m.attempts)))}; ` +
      `found in logs after the kill ${found}, resubmitted ${resubmitted}; accepted twice ${twice}`,
  )
})

t.test('dlr: a dlr worker SIGKILLed while 20,000 reports are applied; the others finish and no report is lost', async (t) => {
  const MESSAGES = 5000
  const PER_POST = 50
  const stack = await chaos.stack({ JOB_LOCK_MS: 2000, DLR_CONCURRENCY: 2 })
  await stack.startApi()
  const api = stack.api!
  const rand = random(seed)

  // Stored through the API; no send worker runs, so reports find them QUEUED, as they may in life.
  const ids = await stack.createMessages(t, MESSAGES, 'dlr crash')

  // Per message: PENDING, SENT, one final; one of the three again (an exact duplicate): 20,000 reports.
  const finals = [
    STATUSES.DELIVERED_TO_HANDSET,
    STATUSES.DELIVERED_TO_HANDSET,
    STATUSES.UNDELIVERABLE_NOT_DELIVERED,
    STATUSES.EXPIRED_EXPIRED,
    STATUSES.REJECTED_NETWORK,
  ]
  const expectedStatus = new Map<string, Status>()
  const fingerprints = new Map<string, Set<string>>()
  const reports = ids.flatMap((id, i) => {
    const build = i % 2 === 0 ? v3Report : v2Report
    const final = finals[i % finals.length]!
    const own = [STATUSES.PENDING_ENROUTE, STATUSES.DELIVERED_TO_OPERATOR, final].map((s, k) => build(id, s, { doneAt: `2026-11-28T10:00:0${k}.000+0000` }))
    const parsed = own.map((r) => parseReport(r))
    fingerprints.set(id, new Set(parsed.map((p) => (p.kind === 'transition' ? p.transition.fingerprint! : ''))))
    const last = parsed[2]!
    expectedStatus.set(id, last.kind === 'transition' ? last.transition.status : 'QUEUED')
    return [...own, own[Math.floor(rand() * 3)]!]
  })
  const shuffled = shuffle(reports, rand)
  const posts: unknown[][] = []
  for (let i = 0; i < shuffled.length; i += PER_POST) posts.push(shuffled.slice(i, i + PER_POST))
  // Every POST is acknowledged before a worker runs: the queue is full when the kill comes.
  await mapLimit(posts, 8, async (results) => {
    const res = await api.post(DLR_PATH, { results })
    if (res.status !== 200) throw new Error(`POST /infobip-dlr answered ${res.status}: ${res.text}`)
  })
  t.pass(`${reports.length} reports acknowledged in ${posts.length} POSTs`)

  const queue = stack.queue('dlr')
  const events = new QueueEvents('dlr', { connection: chaos.client(), prefix: stack.queuePrefix })
  t.teardown(() => events.close())
  let stalled = 0
  events.on('stalled', () => stalled++)
  await events.waitUntilReady()

  const [victim, survivor] = await Promise.all([stack.worker('dlr'), stack.worker('dlr')])
  await waitFor(async () => ((await stack.pending(queue)) <= posts.length * 0.8 ? true : undefined), 60_000, 'a fifth of the reports applied', 10)
  const activeAtKill = await queue.getActiveCount()
  await victim.kill('SIGKILL')
  const killedAt = Date.now()
  const replacement = await stack.worker('dlr')

  await waitFor(async () => ((await stack.pending(queue)) === 0 ? true : undefined), 90_000, 'the dlr queue to drain', 100)
  const drainMs = Date.now() - killedAt
  await waitFor(() => stalled > 0 || undefined, 10_000, 'the stalled event', 50).catch(() => undefined)
  t.ok(stalled > 0, `the kill interrupted jobs: ${stalled} stalled job(s) taken over by the others`)
  t.equal(await queue.getFailedCount(), 0, 'no dlr job failed')

  const messages = (await stack.store.getMany(ids)) as Message[]
  const stored = await stack.store.fingerprints(ids)
  const lost = ids.filter((id, i) => [...fingerprints.get(id)!].some((f) => !stored[i]!.has(f)))
  t.equal(lost.length, 0, `every report was applied: its fingerprint is recorded (messages missing one: ${lost.length})`)
  const wrong = messages.filter((m) => m.status !== expectedStatus.get(m.id) || !isFinal(m.status))
  t.equal(wrong.length, 0, 'every message reached its final status')
  t.ok(
    messages.every((m) => m.events.every((e, i) => i === 0 || RANK[e.status] > RANK[m.events[i - 1]!.status])),
    'no status applied twice, none went back',
  )

  const counts = [victim, survivor, replacement].flatMap((w) => w.logged<Record<string, number>>('applied delivery reports'))
  const total = (k: string) => counts.reduce((n, c) => n + (c[k] ?? 0), 0)
  t.comment(
    `dlr crash: ${activeAtKill} jobs active at the kill, ${stalled} stalled jobs taken over, queue drained ${drainMs} ms after the kill; ` +
      `logged: applied ${total('applied')}, duplicate ${total('duplicate')} (${MESSAGES} sent as duplicates: ${total('duplicate') - MESSAGES} re-applied after the kill, without effect), ignored ${total('ignored')}`,
  )
})

t.test('dlr: a report job whose worker dies twice is still applied', async (t) => {
  const stack = await chaos.stack({ JOB_LOCK_MS: 1000, DLR_CONCURRENCY: 1 })
  await stack.startApi()
  const api = stack.api!
  const res = await api.post('/messages/batch', { messages: Array.from({ length: 1000 }, (_, i) => ({ to: phone(ordinary(i)), text: 'twice' })) }, BEARER)
  const ids = res.json<{ messages: Message[] }>().messages.map((m) => m.id)
  const results = ids.flatMap((id) => [v3Report(id, STATUSES.PENDING_ENROUTE), v3Report(id, STATUSES.DELIVERED_TO_HANDSET)])
  t.equal((await api.post(DLR_PATH, { results })).status, 200, 'one POST of 2,000 reports acknowledged')
  const queue = stack.queue('dlr')
  const [job] = await queue.getJobs(['waiting'])
  const started = async () => Number(await chaos.redisClient.hget(`${stack.queuePrefix}:dlr:${job!.id}`, 'ats'))

  // Two workers in turn take the job and are SIGKILLed while it runs (a crash, then another).
  for (let kill = 1; kill <= 2; kill++) {
    const worker = await stack.worker('dlr')
    const state = await waitFor(
      async () => {
        const now = await job!.getState()
        if (now === 'completed' || now === 'unknown') return 'completed'
        return (await started()) >= kill && now === 'active' ? 'active' : undefined
      },
      30_000,
      `the job taken by worker ${kill}`,
      2,
    )
    await worker.kill('SIGKILL')
    if (state === 'completed') {
      t.comment(`worker ${kill} finished the job before it could be killed: the double crash was not staged`)
      return
    }
  }
  await stack.worker('dlr')
  // A completed dlr job is removed at once (removeOnComplete): gone means completed.
  const end = await waitFor(
    async () => {
      const state = await job!.getState()
      return state === 'completed' || state === 'unknown' ? 'completed' : state === 'failed' ? 'failed' : undefined
    },
    30_000,
    'the job to end',
    100,
  )
  const failedReason = end === 'failed' ? (await queue.getJob(job!.id!))?.failedReason : undefined
  const delivered = (await stack.statusCounts()).DELIVERED
  t.comment(`a job taken by two workers that both died: ${end}${failedReason ? ` (${failedReason})` : ''}; ${delivered} of 1000 messages got their reports`)
  t.equal(delivered, 1000, 'the 2,000 acknowledged reports were applied')
})
