import type { DestinationResult, SubmitOutcome } from '../infobip/requests.js'
import type { Submission, Transition } from './message.js'
import { REJECTED_DUPLICATE_MESSAGE_ID, REJECTED_SYSTEM_ERROR, STATUS, statusFromInfobip } from './status.js'

/**
 * What one answer of Infobip's send API means for the messages of the request: which status changes
 * to apply, which messages to try again, whether to pause the send queue. Pure, so that every answer
 * is tested without Redis or HTTP; the send worker (workers/send.ts) carries the plan out.
 * See docs/infobip.md#http-answers.
 */

/** `sms_infobip_submissions_total{outcome}`: every message of a request counts once. */
export const SUBMISSION_OUTCOMES = ['accepted', 'rejected', 'http_401', 'http_403', 'http_4xx', 'http_429', 'http_5xx', 'network'] as const
export type SubmissionOutcome = (typeof SUBMISSION_OUTCOMES)[number]

/** How long a message may wait through Infobip 429s before it ends FAILED/RATE_LIMITED. */
export const RATE_LIMITED_GIVE_UP_MS = 24 * 60 * 60 * 1000

export interface SubmissionPlan {
  /** Status changes to apply; each settles its message's submission. */
  transitions: Transition[]
  /** Infobip answered for these without taking them: their submission's outcome is known. */
  settle: string[]
  /** To submit again on a later attempt of the job. */
  retry: string[]
  /** To submit again now, each in a request of its own, so that one bad message cannot fail the others. */
  alone: string[]
  /** Infobip has these already: to look up in its logs for their real status. */
  lookUp: string[]
  /** The API key does not work (401/403): no message is at fault; the queue waits for the key. */
  accountError?: { status: 401 | 403; detail: string }
  /** Pause the whole send queue this long, and put the job back without using up an attempt. */
  pauseMs?: number
  /** Nothing of the job is worth another attempt: it ends, with this reason. */
  giveUp?: string
  counts: Partial<Record<SubmissionOutcome, number>>
}

export interface PlanContext {
  /** When the job's messages became due (creation or `sendAt`), ms. */
  dueSince: number
  now: number
  /** The wait before the next try when Infobip gives no `Retry-After`. */
  backoffMs: number
  /** The wait before trying a key that answered 401/403 again (grows, at most a minute). */
  accountBackoffMs: number
}

export function planSubmission(messages: Submission[], outcome: SubmitOutcome, context: PlanContext): SubmissionPlan {
  const ids = messages.map((m) => m.id)
  const plan: SubmissionPlan = { transitions: [], settle: [], retry: [], alone: [], lookUp: [], counts: {} }
  switch (outcome.kind) {
    case 'accepted':
      return planAccepted(plan, ids, outcome.bulkId, outcome.results)
    case 'rate_limited':
      plan.counts.http_429 = ids.length
      plan.settle = ids
      if (context.now - context.dueSince > RATE_LIMITED_GIVE_UP_MS) {
        plan.transitions = failed(ids, 'RATE_LIMITED', `Infobip answered 429 for 24 h: ${outcome.detail}`)
        plan.giveUp = 'rate limited for 24 h'
      } else plan.pauseMs = outcome.retryAfterMs ?? context.backoffMs
      return plan
    case 'unauthorized':
      plan.counts[outcome.status === 401 ? 'http_401' : 'http_403'] = ids.length
      plan.settle = ids
      plan.accountError = { status: outcome.status, detail: outcome.detail }
      plan.pauseMs = context.accountBackoffMs
      return plan
    case 'client_error':
      plan.counts.http_4xx = ids.length
      plan.settle = ids
      if (ids.length > 1) plan.alone = ids
      else plan.transitions = failed(ids, 'INFOBIP_4XX', `Infobip answered ${outcome.status}: ${outcome.detail}`)
      return plan
    case 'server_error':
    case 'network':
      // The outcome is unknown (a gateway may answer 502 after Infobip accepted the request): the
      // in-flight markers stay, so the next attempt looks the messages up before submitting again.
      plan.counts[outcome.kind === 'network' ? 'network' : 'http_5xx'] = ids.length
      plan.retry = ids
      return plan
  }
}

/**
 * Infobip took the request as a whole, and says per destination what it did: PENDING, or REJECTED
 * for that one destination. A message missing from the answer has an unknown fate (its marker stays,
 * so the next attempt looks it up); REJECTED_SYSTEM_ERROR is worth another try.
 */
function planAccepted(plan: SubmissionPlan, ids: string[], bulkId: string | undefined, results: DestinationResult[]): SubmissionPlan {
  const byId = new Map(results.map((r) => [r.messageId, r]))
  let rejected = 0
  for (const id of ids) {
    const result = byId.get(id)
    if (!result) {
      plan.retry.push(id)
      continue
    }
    if (result.status?.groupId === 5 && result.status.id === REJECTED_DUPLICATE_MESSAGE_ID) {
      // Our ids are unique: Infobip has this message from an earlier submission whose answer was lost.
      plan.transitions.push({ id, status: STATUS.PENDING, source: 'send', infobipStatus: result.status.name, settlesSubmission: true })
      plan.lookUp.push(id)
      continue
    }
    if (result.status?.groupId === 5 && result.status.id === REJECTED_SYSTEM_ERROR) {
      rejected++
      plan.settle.push(id)
      plan.retry.push(id)
      continue
    }
    const status = statusFromInfobip(result.status) === STATUS.REJECTED ? STATUS.REJECTED : STATUS.PENDING
    if (status === STATUS.REJECTED) rejected++
    plan.transitions.push({
      id,
      status,
      source: 'send',
      infobipStatus: result.status?.name,
      infobip: { messageId: result.messageId, ...(bulkId ? { bulkId } : {}), status: result.status, messageCount: result.messageCount },
      settlesSubmission: true,
    })
  }
  // Infobip took the request: a message missing from its answer counts as accepted.
  plan.counts.accepted = ids.length - rejected
  if (rejected > 0) plan.counts.rejected = rejected
  return plan
}

const failed = (ids: string[], code: string, message: string): Transition[] =>
  ids.map((id) => ({ id, status: STATUS.FAILED, source: 'send', error: { code, message }, settlesSubmission: true }))
