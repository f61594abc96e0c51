import t from 'tap'
import { parseReport } from '../../src/domain/reports.js'
import type { Message, Transition } from '../../src/domain/message.js'
import { applyModel, comparable, newModelMessage, random, shuffle, STATUSES, v2Report, v3Report, witness } from '../helpers/reports.js'
import { Chaos, DLR_PATH, mapLimit } from './harness.js'
import { waitFor } from '../helpers/index.js'

/**
 * Chaos 4: a storm of delivery reports — 50,000, a third of them exact duplicates, shuffled, in POSTs
 * of random size to the API, applied by three dlr worker processes at once. The reference is the pure
 * model of the transition rules (docs/statuses.md) in test/helpers/reports.ts, as in test/workers/dlr-concurrency.test.ts (which does
 * the same at a smaller scale, with fast-check): each message's end state must be the model's after
 * applying its reports in some order (the one its events show), and what no order can change — the
 * fingerprints kept, a single final's status and `infobip`, the number of duplicates — must be equal.
 */

const chaos = await Chaos.start(t, 'reports')
const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000)
t.comment(`seed ${seed} (CHAOS_SEED=${seed} replays the shuffle)`)

const TOTAL = 50_000
const MESSAGES = 10_000
const UNMATCHED = 100
const INVALID = 100

/** `infobip.*` as the comparisons see it (the store may give its keys back in another order). */
const normal = (infobip: unknown) =>
  JSON.stringify(comparable({ status: 'QUEUED', events: [], infobip: (infobip ?? null) as Record<string, unknown> | null }).infobip)

const transitionOf = (report: unknown): Transition | undefined => {
  const parsed = parseReport(report)
  return parsed.kind === 'transition' ? parsed.transition : undefined
}

t.test(
  `${TOTAL.toLocaleString('en')} reports, a third duplicated, shuffled, across three dlr workers: end state equal to a sequential application`,
  async (t) => {
    const stack = await chaos.stack({ DLR_CONCURRENCY: 4 })
    await stack.startApi()
    const api = stack.api!
    const rand = random(seed)

    const ids = await stack.createMessages(t, MESSAGES, 'storm')

    // Per message: PENDING, SENT, a final; every 5th a late PENDING; every 7th a second, different
    // final (then the first one applied wins); v2 and v3 shapes.
    const finals = [STATUSES.DELIVERED_TO_HANDSET, STATUSES.UNDELIVERABLE_NOT_DELIVERED, STATUSES.EXPIRED_EXPIRED, STATUSES.REJECTED_NETWORK]
    const perMessage = ids.map((id, i) => {
      const build = i % 3 === 0 ? v2Report : v3Report
      const at = (s: number) => ({ doneAt: `2026-11-28T10:00:0${s}.000+0000` })
      const final = finals[i % finals.length]!
      const reports: unknown[] = [build(id, STATUSES.PENDING_ENROUTE, at(1)), build(id, STATUSES.DELIVERED_TO_OPERATOR, at(2)), build(id, final, at(3))]
      if (i % 5 === 0) reports.push(build(id, STATUSES.PENDING_ACCEPTED, at(4)))
      if (i % 7 === 0) reports.push(build(id, finals[(i + 1) % finals.length], at(5)))
      return reports
    })
    const distinct = perMessage.flat()
    const duplicates = Array.from({ length: TOTAL - distinct.length - UNMATCHED - INVALID }, () => distinct[Math.floor(rand() * distinct.length)]!)
    const unmatched = Array.from({ length: UNMATCHED }, (_, i) => v3Report(`msg_UNKNOWN${String(i).padStart(21, '0')}`))
    const invalid = Array.from({ length: INVALID }, (_, i) => (i % 2 === 0 ? { messageId: ids[i]! } : { messageId: 42, status: { groupId: 3, id: 5 } }))
    const all = shuffle([...distinct, ...duplicates, ...unmatched, ...invalid], rand)
    t.equal(all.length, TOTAL)
    t.comment(
      `${distinct.length} distinct reports for ${MESSAGES} messages, ${duplicates.length} exact duplicates (${((100 * duplicates.length) / TOTAL).toFixed(1)}%), ${UNMATCHED} for unknown messages, ${INVALID} invalid`,
    )

    const workers = await Promise.all([stack.worker('dlr'), stack.worker('dlr'), stack.worker('dlr')])
    const queue = stack.queue('dlr')
    const posts: unknown[][] = []
    for (let i = 0; i < all.length;) {
      const size = 1 + Math.floor(rand() * 400)
      posts.push(all.slice(i, i + size))
      i += size
    }
    const started = Date.now()
    await mapLimit(posts, 6, async (results) => {
      const res = await api.post(DLR_PATH, { results })
      if (res.status !== 200) throw new Error(`POST /infobip-dlr answered ${res.status}: ${res.text}`)
    })
    const postedMs = Date.now() - started
    await waitFor(async () => ((await stack.pending(queue)) === 0 ? true : undefined), 120_000, 'the dlr queue to drain', 250)
    const appliedMs = Date.now() - started
    t.equal(await queue.getFailedCount(), 0, 'no dlr job failed')

    const stored: Message[] = []
    for (let i = 0; i < ids.length; i += 1000) stored.push(...((await stack.store.getMany(ids.slice(i, i + 1000))) as Message[]))
    const fingerprints = await stack.store.fingerprints(ids)

    let explained = 0
    let inPostedOrder = 0
    let sameFingerprints = 0
    let sameFinal = 0
    const failures: string[] = []
    const position = new Map(all.map((r, i) => [r, i]))
    for (const [i, message] of stored.entries()) {
      const own = perMessage[i]!.map((r) => transitionOf(r)!)
      const state = comparable(message)
      const order = witness(state, own)
      if (JSON.stringify(order) === JSON.stringify(state)) explained++
      else if (failures.length < 3) failures.push(`${message.id}: stored ${JSON.stringify(state)} / model ${JSON.stringify(order)}`)
      const expectedPrints = new Set(own.map((tr) => tr.fingerprint!))
      if (expectedPrints.size === fingerprints[i]!.size && [...expectedPrints].every((f) => fingerprints[i]!.has(f))) sameFingerprints++
      const finalsOf = own.filter((tr) => ['DELIVERED', 'UNDELIVERABLE', 'EXPIRED', 'REJECTED'].includes(tr.status))
      if (
        finalsOf.length === 1
          ? message.status === finalsOf[0]!.status && normal(message.infobip) === normal(finalsOf[0]!.infobip)
          : finalsOf.some((f) => f.status === message.status)
      )
        sameFinal++
      // Informative: the model applied in the order the reports were posted.
      const posted = [...perMessage[i]!].sort((a, b) => position.get(a)! - position.get(b)!)
      const model = new Map([[message.id, newModelMessage()]])
      for (const r of posted) applyModel(model, transitionOf(r)!)
      if (JSON.stringify(comparable(model.get(message.id)!)) === JSON.stringify(state)) inPostedOrder++
    }
    t.equal(explained, MESSAGES, `every message's state is the model's for some order of its reports ${failures.join('\n')}`)
    t.equal(sameFingerprints, MESSAGES, 'every distinct report is recorded once, none lost')
    t.equal(sameFinal, MESSAGES, 'a single final decides status and infobip.*; with two finals, one of them')
    t.ok(
      stored.every((m) => m.final && m.events.every((e, k) => e.seq === k + 1)),
      'every message final; seq runs 1..n',
    )

    const counts = workers.map((w) => w.logged<Record<string, number>>('applied delivery reports'))
    const total = (k: string) => counts.flat().reduce((n, c) => n + (c[k] ?? 0), 0)
    t.equal(total('duplicate'), duplicates.length, 'duplicates counted: exactly the copies')
    t.equal(total('unmatched'), UNMATCHED, 'reports for unknown messages counted as unmatched')
    t.equal(total('invalid'), INVALID, 'invalid reports counted')
    t.equal(
      total('applied'),
      stored.reduce((n, m) => n + m.events.length - 1, 0),
      'one event per applied report',
    )
    t.ok(
      counts.every((c) => c.length > 0),
      `all three workers applied jobs (${counts.map((c) => c.length).join(', ')} jobs)`,
    )
    t.comment(
      `report storm: ${TOTAL} reports in ${posts.length} POSTs acknowledged in ${postedMs} ms, all applied ${appliedMs} ms after the first POST ` +
        `(${Math.round(TOTAL / (appliedMs / 1000))} reports/s); ${inPostedOrder} of ${MESSAGES} messages also equal the model applied in posted order`,
    )
  },
)
