import { UnrecoverableError, Worker, type Job } from 'bullmq'
import type { Logger } from 'pino'
import { REJECTED_SYSTEM_ERROR, STATUS, statusFromInfobip, type Status } from '../src/domain/status.js'
import type { InfobipClient, SubmitOutcome } from '../src/infobip/client.js'
import type { DestinationResult, InfobipReport, Submission } from '../src/infobip/requests.js'
import { parseReport } from '../src/domain/reports.js'
import type { SendJob } from '../src/queues.js'
import type { SubmissionOutcome } from '../src/metrics.js'
import type { MessageStore, Transition } from '../src/store/message-store.js'
import type { ApplyTransitions } from './transitions.js'

/** How long a message may wait through Infobip 429s before it ends FAILED/RATE_LIMITED (SPEC §4). */
const RATE_LIMITED_GIVE_UP_MS = 24 * 60 * 60 * 1000
const REQUEST_SIZE = 100

export interface SendDeps {
  store: MessageStore
  infobip: InfobipClient
  log: Logger
  maxAttempts: number
  backoffMs: number
  /**
   * How long a submission can take (INFOBIP_TIMEOUT_MS and a margin): another job's in-flight marker
   * younger than this means that job is submitting the message now.
   */
  busyMs: number
  /** Global cap on submissions per second across all workers; 0 = none. */
  rateLimitPerSecond: number
  /** Pauses the whole queue (BullMQ `worker.rateLimit`), set once the worker exists. */
  pauseQueue: (ms: number) => Promise<void>
  /** Metrics: messages submitted, by outcome; every message of a request counts. */
  onSubmission?: (outcome: SubmissionOutcome, count: number) => void
  /** Applies status changes (the transition script, then callbacks and metrics). */
  apply: ApplyTransitions
}

/** Thrown for failures worth another attempt; BullMQ retries with backoff. */
class RetryableSendError extends Error {
  override name = 'RetryableSendError'
}

/**
 * The send processor. For each message of the job: never submit one that is already PENDING or
 * beyond; look up in Infobip's logs any whose earlier submission has no known outcome; submit the
 * rest in requests of up to 100, and record what Infobip answered through the transition script.
 */
export function makeSendProcessor(deps: SendDeps) {
  const { store, infobip, log } = deps

  const claimBy = (job: Job<SendJob>) => ({ owner: job.id ?? '', busyMs: deps.busyMs })

  return async function processSend(job: Job<SendJob>): Promise<void> {
    const jobLog = log.child({ jobId: job.id, attempt: job.attemptsMade + 1 })
    const ids = job.data.ids

    if (deps.rateLimitPerSecond > 0 && !(await store.reserveSendBudget(ids.length, deps.rateLimitPerSecond))) {
      await deps.pauseQueue(1000 - (Date.now() % 1000))
      throw Worker.RateLimitError()
    }

    const claims = await store.claim(ids, claimBy(job))
    const ready = claims.flatMap((c) => (c.result === 'ok' ? [c.submission] : []))
    const unknown = ids.filter((_, i) => claims[i]!.result === 'unknown')
    const busy = ids.filter((_, i) => claims[i]!.result === 'busy')
    // Another job (a second one for the same messages) is submitting these right now: they are its.
    if (busy.length > 0) jobLog.info({ count: busy.length }, 'messages being submitted by another job; left to it')
    if (unknown.length > 0) {
      const resolved = await resolveUnknown(unknown, job, jobLog).catch((error: Error) =>
        retryOrGiveUp(job, unknown, `outcome unknown, logs lookup failed: ${error.message}`),
      )
      ready.push(...resolved)
    }
    if (ready.length === 0) return

    const retry: string[] = []
    for (let i = 0; i < ready.length; i += REQUEST_SIZE) {
      retry.push(...(await submit(ready.slice(i, i + REQUEST_SIZE), job, jobLog)))
    }
    if (retry.length > 0) await retryOrGiveUp(job, retry, `${retry.length} message(s) not accepted yet`)
  }

  /**
   * An earlier submission of these messages has no known outcome (timeout, lost connection, a worker
   * killed while waiting): ask Infobip's logs instead of risking a second SMS. Returns the messages that
   * Infobip does not know, claimed again for submission. A failed lookup throws: the job retries.
   */
  async function resolveUnknown(ids: string[], job: Job<SendJob>, jobLog: Logger): Promise<Submission[]> {
    const reports = await infobip.logs(ids)
    const known = new Map(reports.flatMap((r) => (r.messageId ? [[r.messageId, r] as const] : [])))
    const transitions = [...known.values()].map(fromLogs)
    if (transitions.length > 0) await transition(transitions)
    const unknownToInfobip = ids.filter((id) => !known.has(id))
    jobLog.info({ found: known.size, resubmit: unknownToInfobip.length }, 'looked up messages with an unknown submission outcome')
    const claims = await store.claim(unknownToInfobip, { ...claimBy(job), force: true })
    return claims.flatMap((c) => (c.result === 'ok' ? [c.submission] : []))
  }

  /** Submits one request; returns the ids to try again later. */
  async function submit(messages: Submission[], job: Job<SendJob>, jobLog: Logger): Promise<string[]> {
    const ids = messages.map((m) => m.id)
    const outcome = await infobip.submit(messages)
    if (outcome.kind !== 'accepted') deps.onSubmission?.(outcomeLabel(outcome), messages.length)
    switch (outcome.kind) {
      case 'accepted':
        return recordAccepted(messages, outcome.bulkId, outcome.results, jobLog)
      case 'rate_limited': {
        await store.settle(ids)
        const waitingSince = job.timestamp + (job.opts.delay ?? 0)
        if (Date.now() - waitingSince > RATE_LIMITED_GIVE_UP_MS) {
          await fail(ids, 'RATE_LIMITED', `Infobip answered 429 for 24 h: ${outcome.detail}`)
          throw new UnrecoverableError('rate limited for 24 h')
        }
        const wait = outcome.retryAfterMs ?? backoff(job.attemptsMade + 1, deps.backoffMs)
        jobLog.warn({ waitMs: wait }, 'infobip rate limit: pausing the send queue')
        await deps.pauseQueue(wait)
        // Moves the job back to waiting without using up an attempt.
        throw Worker.RateLimitError()
      }
      case 'client_error':
        await store.settle(ids)
        if (messages.length > 1) {
          // One bad message must not fail the others: each is retried alone, once.
          jobLog.warn({ status: outcome.status, count: messages.length }, 'infobip refused a request of several messages; retrying each alone')
          const retry = await Promise.all(messages.map((m) => store.claim([m.id], { ...claimBy(job), force: true }).then(() => submit([m], job, jobLog))))
          return retry.flat()
        }
        jobLog.warn({ status: outcome.status, messageId: ids[0] }, 'infobip refused the message')
        await fail(ids, 'INFOBIP_4XX', `Infobip answered ${outcome.status}: ${outcome.detail}`)
        return []
      case 'server_error':
        await store.settle(ids)
        jobLog.warn({ status: outcome.status, count: ids.length }, 'infobip server error')
        return ids
      case 'network':
        // The outcome is unknown: the in-flight marker stays, so the next attempt looks it up first.
        jobLog.warn({ error: outcome.detail, count: ids.length }, 'infobip request failed')
        return ids
    }
  }

  async function recordAccepted(messages: Submission[], bulkId: string | undefined, results: DestinationResult[], jobLog: Logger) {
    const byId = new Map(results.map((r) => [r.messageId, r]))
    const transitions: Transition[] = []
    const retry: string[] = []
    for (const { id } of messages) {
      const result = byId.get(id)
      if (!result) {
        // Not in the answer: its fate is unknown, so the next attempt looks it up.
        retry.push(id)
        continue
      }
      if (result.status?.groupId === 5 && result.status.id === REJECTED_SYSTEM_ERROR) {
        retry.push(id)
        continue
      }
      const status: Status = statusFromInfobip(result.status) === STATUS.REJECTED ? STATUS.REJECTED : STATUS.PENDING
      transitions.push({
        id,
        status,
        source: 'send',
        infobipStatus: result.status?.name,
        infobip: { messageId: result.messageId, ...(bulkId ? { bulkId } : {}), status: result.status, messageCount: result.messageCount },
        settlesSubmission: true,
      })
    }
    // Infobip accepted the request as a whole, but may have refused single destinations.
    const rejected = messages.filter(({ id }) => statusFromInfobip(byId.get(id)?.status) === STATUS.REJECTED).length
    deps.onSubmission?.('accepted', messages.length - rejected)
    if (rejected > 0) deps.onSubmission?.('rejected', rejected)
    if (transitions.length > 0) await transition(transitions)
    const systemErrors = retry.filter((id) => byId.has(id))
    if (systemErrors.length > 0) await store.settle(systemErrors)
    jobLog.info({ accepted: transitions.length, retry: retry.length }, 'submitted to infobip')
    return retry
  }

  /**
   * Another attempt later, or, on the last one, FAILED — but only for messages Infobip does not know:
   * a submission that timed out may have been accepted, and a delivered SMS must not end FAILED.
   */
  async function retryOrGiveUp(job: Job<SendJob>, ids: string[], reason: string): Promise<never> {
    if (job.attemptsMade + 1 < (job.opts.attempts ?? deps.maxAttempts)) throw new RetryableSendError(reason)
    let unknownToInfobip = ids
    try {
      const found = (await infobip.logs(ids)).filter((r) => r.messageId && ids.includes(r.messageId))
      if (found.length > 0) await transition(found.map(fromLogs))
      const known = new Set(found.map((r) => r.messageId))
      unknownToInfobip = ids.filter((id) => !known.has(id))
    } catch {
      // The lookup failed too: what remains unknown ends FAILED, as configured.
    }
    await fail(unknownToInfobip, 'RETRIES_EXHAUSTED', `gave up after ${job.attemptsMade + 1} attempts: ${reason}`)
    throw new UnrecoverableError(reason)
  }

  async function fail(ids: string[], code: string, message: string): Promise<void> {
    await transition(ids.map((id) => ({ id, status: STATUS.FAILED, source: 'send', error: { code, message }, settlesSubmission: true })))
  }

  async function transition(transitions: Transition[]): Promise<void> {
    await deps.apply(transitions)
  }
}

/**
 * A message found in Infobip's logs, applied like any other report; one whose status we cannot read
 * is at least known to Infobip, so it is PENDING and must not be submitted again.
 */
function fromLogs(report: InfobipReport): Transition {
  const parsed = parseReport(report)
  if (parsed.kind === 'transition') return { ...parsed.transition, source: 'send', settlesSubmission: true }
  return { id: report.messageId!, status: STATUS.PENDING, source: 'send', infobipStatus: report.status?.name, settlesSubmission: true }
}

function outcomeLabel(outcome: Exclude<SubmitOutcome, { kind: 'accepted' }>): SubmissionOutcome {
  switch (outcome.kind) {
    case 'rate_limited':
      return 'http_429'
    case 'client_error':
      return 'http_4xx'
    case 'server_error':
      return 'http_5xx'
    case 'network':
      return 'network'
  }
}

/** Exponential backoff with full jitter (the same curve BullMQ applies between attempts). */
export const backoff = (attempt: number, baseMs: number): number => Math.floor(Math.random() * baseMs * 2 ** (attempt - 1))
