import t from 'tap'
import type { Submission } from '../../src/domain/message.js'
import { planSubmission, RATE_LIMITED_GIVE_UP_MS, type PlanContext } from '../../src/domain/submission.js'

const messages = (n: number): Submission[] => Array.from({ length: n }, (_, i) => ({ id: `m${i}`, to: '41793026727', from: 'InfoSMS', text: 'hi' }))
const now = Date.parse('2026-12-01T10:00:00Z')
const context: PlanContext = { dueSince: now - 1000, now, backoffMs: 1234, accountBackoffMs: 4321 }
const pending = { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED' }

t.test('accepted: PENDING per destination, settling its submission', async (t) => {
  const plan = planSubmission(
    messages(2),
    {
      kind: 'accepted',
      bulkId: 'b1',
      results: [
        { messageId: 'm0', status: pending, messageCount: 1 },
        { messageId: 'm1', status: pending },
      ],
    },
    context,
  )
  t.same(
    plan.transitions.map((x) => [x.id, x.status, x.settlesSubmission]),
    [
      ['m0', 'PENDING', true],
      ['m1', 'PENDING', true],
    ],
  )
  t.match(plan.transitions[0]!.infobip, { messageId: 'm0', bulkId: 'b1', status: pending, messageCount: 1 })
  t.same([plan.retry, plan.settle, plan.alone, plan.counts], [[], [], [], { accepted: 2 }])
})

t.test('accepted: a per-destination REJECTED is REJECTED; REJECTED_SYSTEM_ERROR is retried; a missing one stays unknown', async (t) => {
  const plan = planSubmission(
    messages(3),
    {
      kind: 'accepted',
      results: [
        { messageId: 'm0', status: { groupId: 5, id: 18, name: 'REJECTED_DESTINATION_NOT_REGISTERED' } },
        { messageId: 'm1', status: { groupId: 5, id: 21, name: 'REJECTED_SYSTEM_ERROR' } },
      ],
    },
    context,
  )
  t.same(
    plan.transitions.map((x) => [x.id, x.status]),
    [['m0', 'REJECTED']],
  )
  t.same(plan.retry, ['m1', 'm2'], 'the system error and the missing one are tried again')
  t.same(plan.settle, ['m1'], 'only the answered one is settled: the missing one is looked up first')
  t.same(plan.counts, { accepted: 1, rejected: 2 })
})

t.test('429: settled, the queue pauses for Retry-After (else the backoff); after 24 h of them, FAILED', async (t) => {
  const withRetryAfter = planSubmission(messages(2), { kind: 'rate_limited', retryAfterMs: 5000, detail: 'slow down' }, context)
  t.same([withRetryAfter.pauseMs, withRetryAfter.settle, withRetryAfter.transitions, withRetryAfter.counts], [5000, ['m0', 'm1'], [], { http_429: 2 }])
  t.equal(planSubmission(messages(1), { kind: 'rate_limited', detail: '' }, context).pauseMs, 1234)
  const late = planSubmission(messages(1), { kind: 'rate_limited', detail: 'slow down' }, { ...context, dueSince: now - RATE_LIMITED_GIVE_UP_MS - 1 })
  t.equal(late.pauseMs, undefined)
  t.ok(late.giveUp)
  t.match(late.transitions, [{ id: 'm0', status: 'FAILED', error: { code: 'RATE_LIMITED' } }])
})

t.test('4xx: one message FAILED; several each alone, none failed yet', async (t) => {
  const one = planSubmission(messages(1), { kind: 'client_error', status: 400, detail: 'bad' }, context)
  t.match(one.transitions, [{ id: 'm0', status: 'FAILED', error: { code: 'INFOBIP_4XX', message: 'Infobip answered 400: bad' } }])
  t.same(one.counts, { http_4xx: 1 })
  const several = planSubmission(messages(3), { kind: 'client_error', status: 400, detail: 'bad' }, context)
  t.same([several.transitions, several.alone, several.settle], [[], ['m0', 'm1', 'm2'], ['m0', 'm1', 'm2']])
})

t.test('5xx and network errors leave the outcome unknown: tried again, the markers stay so that the next attempt looks them up', async (t) => {
  const server = planSubmission(messages(2), { kind: 'server_error', status: 502, detail: 'Bad Gateway' }, context)
  t.same([server.retry, server.settle, server.transitions, server.counts], [['m0', 'm1'], [], [], { http_5xx: 2 }])
  const network = planSubmission(messages(2), { kind: 'network', detail: 'timeout' }, context)
  t.same([network.retry, network.settle, network.counts], [['m0', 'm1'], [], { network: 2 }])
})

t.test('401/403: the account’s problem — nothing fails or is retried as an attempt; the queue pauses for the key', async (t) => {
  for (const status of [401, 403] as const) {
    const plan = planSubmission(messages(3), { kind: 'unauthorized', status, detail: 'Invalid login details' }, context)
    t.same(plan.transitions, [], `${status}: no message is failed`)
    t.same([plan.retry, plan.alone], [[], []], `${status}: not an attempt, not a per-message retry`)
    t.same(plan.settle, ['m0', 'm1', 'm2'], `${status}: Infobip took nothing`)
    t.equal(plan.pauseMs, 4321)
    t.same(plan.accountError, { status, detail: 'Invalid login details' })
    t.same(plan.counts, { [`http_${status}`]: 3 })
  }
})

t.test('23 REJECTED_DUPLICATE_MESSAGE_ID: Infobip has the message — PENDING and looked up, never REJECTED', async (t) => {
  const plan = planSubmission(
    messages(1),
    { kind: 'accepted', results: [{ messageId: 'm0', status: { groupId: 5, groupName: 'REJECTED', id: 23, name: 'REJECTED_DUPLICATE_MESSAGE_ID' } }] },
    context,
  )
  t.match(plan.transitions, [{ id: 'm0', status: 'PENDING', infobipStatus: 'REJECTED_DUPLICATE_MESSAGE_ID', settlesSubmission: true }])
  t.same([plan.lookUp, plan.retry, plan.counts], [['m0'], [], { accepted: 1 }])
})
