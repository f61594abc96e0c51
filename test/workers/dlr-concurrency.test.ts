import { DEFAULT_TENANT } from '../../src/tenants.js'
import type { ChildProcess } from 'node:child_process'
import { Queue } from 'bullmq'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { newMessageId } from '../../src/accept-messages.js'
import { loadConfig } from '../../src/config.js'
import { parseReport } from '../../src/domain/reports.js'
import { partitionPrefix, dlrJobOptions, QUEUE, type DlrJob } from '../../src/queues.js'
import { connectOrExplain, createRedis, type RedisClient } from '../../src/redis.js'
import { MessageStore } from '../../src/store/message-store.js'
import type { Message, Transition } from '../../src/domain/message.js'
import type { ReportCounts } from '../../workers/dlr.js'
import { cleanup, spawnWorker, testEnv, waitFor, workerReady } from '../helpers/index.js'
import {
  applyModel,
  comparable,
  newModelMessage,
  random,
  sendAccepted,
  shuffle,
  sortKeys,
  STATUSES,
  v2Report,
  v3Report,
  witness,
  type ModelMessage,
  type ModelResult,
} from '../helpers/reports.js'

/**
 * The transition rules (docs/statuses.md) under concurrency. The reference is a pure model of the rules (test/helpers/reports.ts).
 *  1. In process, fast-check: random reports (duplicates, late PENDINGs, second finals, the send
 *     worker's PENDING, unknown messages) through the real Lua script one at a time equal the model
 *     report by report; applied by several connections at once, the end state equals the model applied
 *     in an order that explains it, and whatever the order cannot change equals the model's.
 *  2. Three real dlr worker processes: the same large report set, many shuffled orders, as dlr jobs.
 */

const env = testEnv('dlr-conc', { WORKER_QUEUES: 'dlr', DLR_CONCURRENCY: 4, LOG_LEVEL: 'info' })
const config = loadConfig(env)
const connections: RedisClient[] = []
const stores = await Promise.all(
  [1, 2, 3, 4].map(async () => {
    const redis = createRedis(config, 'worker')
    await connectOrExplain(redis, config)
    connections.push(redis)
    return new MessageStore(redis, { prefix: config.KEY_PREFIX, ttlDays: 1, partitions: config.QUEUE_PARTITIONS })
  }),
)
const store = stores[0]!
t.teardown(async () => {
  for (const redis of connections) redis.disconnect()
  await cleanup(config.KEY_PREFIX)
})

const create = async (ids: string[]) =>
  store.create(ids.map((id) => ({ id, tenant: DEFAULT_TENANT, to: '41793026727', from: 'InfoSMS', text: 'hi', encoding: 'GSM-7' as const, segments: 1 })))

function runModel(ids: string[], transitions: readonly Transition[]) {
  const messages = new Map(ids.map((id) => [id, newModelMessage()]))
  const results = transitions.map((tr) => applyModel(messages, tr))
  return { messages, results }
}

/** The stored messages, compared on what the transition rules decide; seq must run 1..n. */
async function snapshot(t: Test, ids: string[]) {
  const messages = (await store.getMany(ids)) as Message[]
  t.ok(
    messages.every((m) => m.events.every((e, i) => e.seq === i + 1)),
    'seq runs 1..n in every message',
  )
  return messages.map(comparable)
}

const finals = (ts: readonly Transition[]) =>
  new Set(ts.filter((tr) => ['DELIVERED', 'UNDELIVERABLE', 'EXPIRED', 'REJECTED', 'FAILED'].includes(tr.status)).map((tr) => tr.fingerprint))

/**
 * What no order can change: with a single final report, the status it sets, and `infobip` from one of
 * its copies (copies share a fingerprint but may differ elsewhere, e.g. v2 and v3 shapes; the first wins).
 */
const sameFinal = (stored: ReturnType<typeof comparable>, model: ModelMessage, transitions: readonly Transition[]) =>
  finals(transitions).size !== 1 ||
  (stored.status === model.status &&
    transitions.some((tr) => tr.status === stored.status && JSON.stringify(sortKeys(tr.infobip)) === JSON.stringify(stored.infobip)))

/** Nor the number of duplicates: every copy of a fingerprint after the first. */
const duplicatesOf = (transitions: readonly Transition[]) => transitions.length - new Set(transitions.map((tr) => `${tr.id} ${tr.fingerprint}`)).size

// -------------------------------------------------------------------------------------------------
// 1. In process, fast-check against the real Lua script

const STATUS_OBJECTS = Object.values(STATUSES)
const op = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('report' as const),
      msg: fc.nat(3),
      status: fc.nat(STATUS_OBJECTS.length - 1),
      doneAt: fc.nat(2),
      error: fc.nat(1),
      v2: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('send' as const), msg: fc.nat(3) }) },
)
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never

/** Message 3 is never created: its reports are unmatched. */
function toTransitions(ops: Op[], ids: string[]): Transition[] {
  return ops.map((o) => {
    const id = ids[o.msg]!
    if (o.kind === 'send') return sendAccepted(id)
    const build = o.v2 ? v2Report : v3Report
    const parsed = parseReport(build(id, STATUS_OBJECTS[o.status], { doneAt: `2026-11-28T10:00:0${o.doneAt}.000+0000`, error: { id: o.error * 27 } }))
    if (parsed.kind !== 'transition') throw new Error(parsed.kind)
    return parsed.transition
  })
}

t.test('fast-check: the Lua script applied one by one equals the model, report by report', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
      const ids = [newMessageId(), newMessageId(), newMessageId(), `unknown-${newMessageId()}`]
      await create(ids.slice(0, 3))
      const transitions = toTransitions(ops, ids)
      const results: string[] = []
      for (const tr of transitions) results.push((await store.transition([tr]))[0]!.result)
      const model = runModel(ids.slice(0, 3), transitions)
      const stored = ((await store.getMany(ids.slice(0, 3))) as Message[]).map(comparable)
      return (
        JSON.stringify(results) === JSON.stringify(model.results) && JSON.stringify(stored) === JSON.stringify([...model.messages.values()].map(comparable))
      )
    }),
    { numRuns: 200 },
  )
  t.pass('200 random report sequences')
})

t.test('fast-check: applied by four connections at once, the state is one the model reaches in some order', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(op, fc.nat(3)), { minLength: 1, maxLength: 40 }), async (opsOnConnections) => {
      const ids = [newMessageId(), newMessageId(), newMessageId(), `unknown-${newMessageId()}`]
      await create(ids.slice(0, 3))
      const transitions = toTransitions(
        opsOnConnections.map(([o]) => o),
        ids,
      )
      const chunks = stores.map((_, c) => transitions.filter((_, i) => opsOnConnections[i]![1] === c))
      const replies = (await Promise.all(chunks.map((chunk, c) => (chunk.length > 0 ? stores[c]!.transition(chunk) : Promise.resolve([]))))).flat()
      const model = runModel(ids.slice(0, 3), transitions)
      const stored = ((await store.getMany(ids.slice(0, 3))) as Message[]).map(comparable)
      const count = (rs: { result: string }[] | ModelResult[], r: string) => rs.filter((x) => (typeof x === 'string' ? x : x.result) === r).length
      for (const [i, s] of stored.entries()) {
        const own = transitions.filter((tr) => tr.id === ids[i])
        if (JSON.stringify(witness(s, own)) !== JSON.stringify(s)) return false
        if (!sameFinal(s, model.messages.get(ids[i]!)!, own)) return false
      }
      return (['duplicate', 'unmatched'] as const).every((r) => count(replies, r) === count(model.results, r))
    }),
    {
      numRuns: 200,
      // Found by this property: copies of one final report in v3 and v2 shape on two connections.
      examples: [
        [
          [
            [{ kind: 'report', msg: 1, status: 2, doneAt: 1, error: 0, v2: false }, 1],
            [{ kind: 'report', msg: 1, status: 2, doneAt: 1, error: 0, v2: true }, 0],
          ],
        ],
      ],
    },
  )
  t.pass('200 random concurrent applications')
})

// -------------------------------------------------------------------------------------------------
// 2. Real worker processes

const MESSAGES = 300
const WORKERS = 3

const workers: ChildProcess[] = []
t.before(async () => {
  for (let i = 0; i < WORKERS; i++) workers.push(spawnWorker(t, env))
  await Promise.all(workers.map((w) => workerReady(w)))
})
const queue = new Queue<DlrJob>(QUEUE.dlr, { connection: connections[0]!, prefix: partitionPrefix(config, 0) })
t.teardown(() => queue.close())

/** The per-job counts each worker process has logged so far. */
function logged(): { perProcess: number[]; total: ReportCounts } {
  const total: ReportCounts = { applied: 0, duplicate: 0, ignored: 0, unmatched: 0, invalid: 0 }
  const perProcess = workers.map((w) => {
    const lines = (w as ChildProcess & { output: string }).output.split('\n').filter((l) => l.includes('"msg":"applied delivery reports"'))
    for (const line of lines) {
      const counts = JSON.parse(line) as ReportCounts
      for (const k of Object.keys(total) as (keyof ReportCounts)[]) total[k] += counts[k]
    }
    return lines.length
  })
  return { perProcess, total }
}

/**
 * 300 messages: PENDING, SENT (group 3 id 2), a final (mostly DELIVERED), a late PENDING; every fourth
 * a second, different final; every tenth never final; a few of unknown status; a third of all reports
 * twice; v2 and v3 shapes; and reports for messages that do not exist.
 */
function reportSet(ids: string[], rand: () => number) {
  const otherFinals = [STATUSES.UNDELIVERABLE_NOT_DELIVERED, STATUSES.EXPIRED_EXPIRED, STATUSES.REJECTED_NETWORK]
  const perMessage = ids.map((id, i) => {
    const build = i % 3 === 0 ? v2Report : v3Report
    const at = (s: number) => ({ doneAt: `2026-11-28T10:00:0${s}.000+0000` })
    const final = i % 5 === 0 ? otherFinals[i % 3]! : STATUSES.DELIVERED_TO_HANDSET
    const reports: unknown[] = [
      build(id, STATUSES.PENDING_ENROUTE, at(1)),
      build(id, STATUSES.DELIVERED_TO_OPERATOR, at(2)),
      build(id, STATUSES.PENDING_ACCEPTED, at(4)),
    ]
    if (i % 10 !== 9) reports.push(build(id, final, at(3)))
    if (i % 4 === 0) reports.push(build(id, final === STATUSES.DELIVERED_TO_HANDSET ? otherFinals[i % 3]! : STATUSES.DELIVERED_TO_HANDSET, at(5)))
    if (i % 20 === 0) reports.push({ messageId: id, status: { groupId: 9, id: 1 } })
    return [...reports, ...reports.filter(() => rand() < 1 / 3)]
  })
  const unmatched = Array.from({ length: 10 }, (_, i) => v3Report(`unknown-${i}-${ids[0]}`))
  return { perMessage, unmatched }
}

/** Pushes the jobs, waits until the workers have logged every report, returns what they counted. */
async function applyByWorkers(jobs: unknown[][]): Promise<{ counts: ReportCounts; processes: number }> {
  const before = logged()
  const reports = jobs.reduce((n, j) => n + j.length, 0)
  await queue.addBulk(jobs.map((results) => ({ name: QUEUE.dlr, data: { body: JSON.stringify({ results }) }, opts: dlrJobOptions })))
  const after = await waitFor(
    () => {
      const now = logged()
      const seen = Object.values(now.total).reduce((a, b) => a + b, 0) - Object.values(before.total).reduce((a, b) => a + b, 0)
      return seen >= reports ? now : undefined
    },
    30_000,
    `${reports} reports to be applied`,
  )
  const counts = Object.fromEntries(Object.entries(after.total).map(([k, v]) => [k, v - before.total[k as keyof ReportCounts]])) as ReportCounts
  return { counts, processes: after.perProcess.filter((n, i) => n > before.perProcess[i]!).length }
}

const transitionsOf = (reports: unknown[]) =>
  reports.flatMap((r) => {
    const parsed = parseReport(r)
    return parsed.kind === 'transition' ? [parsed.transition] : []
  })

t.test(`${WORKERS} worker processes, each message's reports in one job in a random order: equal to the sequential application`, async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), async (seed) => {
      const rand = random(seed)
      const ids = Array.from({ length: MESSAGES }, () => newMessageId())
      const { perMessage, unmatched } = reportSet(ids, rand)
      const orders = perMessage.map((reports) => shuffle(reports, rand))

      // The reference: the real store, one report at a time, message after message.
      await create(ids)
      for (const order of orders) for (const tr of transitionsOf(order)) await store.transition([tr])
      const sequential = await snapshot(t, ids)
      const model = orders.map((order, i) => comparable(runModel([ids[i]!], transitionsOf(order)).messages.get(ids[i]!)!))
      t.same(sequential, model, 'the sequential application equals the model')
      await store.remove(
        ids.map((id) => ({ id, tenant: DEFAULT_TENANT, to: '41793026727', from: 'InfoSMS', text: 'hi', encoding: 'GSM-7' as const, segments: 1 })),
      )
      await create(ids)

      // Jobs of ten messages whose reports interleave at random, each message's keeping its order.
      const jobs: unknown[][] = []
      for (let m = 0; m < MESSAGES; m += 10) {
        const queues = orders.slice(m, m + 10).map((o) => [...o])
        const job: unknown[] = []
        while (queues.some((q) => q.length > 0)) {
          const open = queues.filter((q) => q.length > 0)
          job.push(open[Math.floor(rand() * open.length)]!.shift())
        }
        jobs.push(job)
      }
      jobs[Math.floor(rand() * jobs.length)]!.push(...unmatched)
      const { counts, processes } = await applyByWorkers(shuffle(jobs, rand))

      t.same(await snapshot(t, ids), sequential, `seed ${seed}: concurrent = sequential`)
      t.equal(counts.unmatched, unmatched.length)
      t.equal(
        counts.applied,
        model.reduce((n, m) => n + m.events.length - 1, 0),
      )
      t.ok(processes >= 2, `${processes} processes shared the jobs`)
      return true
    }),
    { numRuns: 4 },
  )
})

t.test(`${WORKERS} worker processes, all reports shuffled into jobs of 1–20, racing the send worker's PENDING`, async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), async (seed) => {
      const rand = random(seed)
      const ids = Array.from({ length: MESSAGES }, () => newMessageId())
      const { perMessage, unmatched } = reportSet(ids, rand)
      await create(ids)

      const all = shuffle([...perMessage.flat(), ...unmatched], rand)
      const jobs: unknown[][] = []
      for (let i = 0; i < all.length;) {
        const size = 1 + Math.floor(rand() * 20)
        jobs.push(all.slice(i, i + size))
        i += size
      }
      // The send worker records Infobip's answers while the reports are being applied.
      const sends: Transition[] = ids.map(sendAccepted)
      const [{ counts, processes }] = await Promise.all([
        applyByWorkers(jobs),
        ...stores.slice(1).map((s, k) => s.transition(sends.filter((_, i) => i % 3 === k))),
      ])

      const stored = await snapshot(t, ids)
      let explained = 0
      let final = 0
      for (const [i, s] of stored.entries()) {
        const own = [...transitionsOf(perMessage[i]!), sends[i]!]
        const order = witness(s, own)
        if (JSON.stringify(order) === JSON.stringify(s)) explained++
        else t.same(s, order, `seed ${seed}: ${ids[i]} is explained by some order`)
        if (sameFinal(s, runModel([ids[i]!], own).messages.get(ids[i]!)!, own)) final++
      }
      t.equal(explained, MESSAGES, `seed ${seed}: every message's state is a sequential application of its reports`)
      t.equal(final, MESSAGES, 'a single final report decides status and infobip whatever the order')
      const reports = transitionsOf(perMessage.flat())
      t.equal(counts.duplicate, duplicatesOf(reports), 'duplicates do not depend on the order')
      t.equal(counts.unmatched, unmatched.length)
      t.equal(
        counts.applied,
        stored.reduce((n, s) => n + s.events.filter((e) => e.source === 'dlr').length, 0),
        'one event per applied report',
      )
      t.ok(processes >= 2, `${processes} processes shared the jobs`)
      return true
    }),
    { numRuns: 8 },
  )
})

t.test('every worker process took part', async (t) => {
  t.ok(
    logged().perProcess.every((n) => n > 0),
    `jobs per process: ${logged().perProcess.join(', ')}`,
  )
})
