import { UnrecoverableError, Worker, type Job } from 'bullmq'
import type { Logger } from 'pino'
import { inBatches, SUPPRESSED_ERROR, type Claim, type Submission, type Transition } from '../src/domain/message.js'
import { parseReport } from '../src/domain/reports.js'
import { STATUS } from '../src/domain/status.js'
import { planSubmission, type SubmissionOutcome } from '../src/domain/submission.js'
import { InfobipAuthError, type InfobipClient } from '../src/infobip/client.js'
import type { InfobipReport } from '../src/infobip/requests.js'
import type { SendJob } from '../src/queues.js'
import type { MessageStore } from '../src/store/message-store.js'
import { DEFAULT_TENANT } from '../src/tenants.js'
import { madeChange, type AfterChanges, type ApplyTransitions } from '../src/changes.js'
import { annotate, ATTR } from '../src/tracing.js'

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
  /** Metrics: messages whose records were gone when their job ran. */
  onMissing?: (count: number) => void
  /** Applies status changes (the transition script, then callbacks and metrics). */
  apply: ApplyTransitions
  /** Callbacks and metrics of changes the claim made itself (a suppressed number). */
  afterChanges: AfterChanges
}

/** A key that answers 401/403 is tried again after this, doubling up to ACCOUNT_BACKOFF_MAX_MS. */
const ACCOUNT_BACKOFF_MS = 1000
const ACCOUNT_BACKOFF_MAX_MS = 60_000
/** A key that does not work is logged at error level at most this often. */
const ACCOUNT_LOG_EVERY_MS = 60_000

/** Thrown for failures worth another attempt; BullMQ retries with backoff. */
class RetryableSendError extends Error {
  override name = 'RetryableSendError'
}

/**
 * The send processor: claim → submit → classify → apply → retry or finish.
 *
 * A message past QUEUED is never submitted again; one whose earlier submission has no known outcome
 * is looked up in Infobip's logs first. The rest go out in requests of up to BATCH_SIZE, and
 * `planSubmission` says what each answer means. See docs/infobip.md#http-answers.
 */
export function makeSendProcessor(deps: SendDeps) {
  const { store, infobip, log } = deps
  // The account's state, as this process last saw it: consecutive 401/403 answers, and the last log line.
  let accountFailures = 0
  let accountLoggedAt = 0
  const accountBackoff = () => Math.min(ACCOUNT_BACKOFF_MAX_MS, ACCOUNT_BACKOFF_MS * 2 ** accountFailures)

  return async function processSend(job: Job<SendJob>): Promise<void> {
    try {
      await send(job)
    } catch (error) {
      if (!(error instanceof InfobipAuthError)) throw error
      // A logs lookup answered 401/403: no message is at fault, as with a refused submission.
      return accountProblem({ status: error.status, detail: error.message })
    }
  }

  /** The API key does not work: the whole send queue waits for it, no attempt is used up, no message fails. */
  async function accountProblem(error: { status: 401 | 403; detail: string }, pauseMs = accountBackoff()): Promise<never> {
    accountFailures++
    if (Date.now() - accountLoggedAt >= ACCOUNT_LOG_EVERY_MS) {
      accountLoggedAt = Date.now()
      log.error({ status: error.status, detail: error.detail, waitMs: pauseMs }, 'infobip refused the API key: sending waits until it works again')
    }
    await deps.pauseQueue(pauseMs)
    throw Worker.RateLimitError()
  }

  async function send(job: Job<SendJob>): Promise<void> {
    const tenant = job.data.tenant ?? DEFAULT_TENANT
    const jobLog = log.child({ jobId: job.id, tenant, attempt: job.attemptsMade + 1 })
    annotate({ [ATTR.tenant]: tenant }, job.data.ids)
    const claimOptions = { owner: job.id ?? '', busyMs: deps.busyMs }

    if (deps.rateLimitPerSecond > 0 && !(await store.reserveSendBudget(job.data.ids.length, deps.rateLimitPerSecond))) {
      await deps.pauseQueue(1000 - (Date.now() % 1000))
      throw Worker.RateLimitError()
    }

    // Claim.
    const ids = job.data.ids
    const claims = await store.claim(ids, claimOptions)
    const ready = claims.flatMap((c) => (c.result === 'ok' ? [c.submission] : []))
    const unknown = ids.filter((_, i) => claims[i]!.result === 'unknown')
    const busy = ids.filter((_, i) => claims[i]!.result === 'busy').length
    if (busy > 0) jobLog.info({ count: busy }, 'messages being submitted by another job; left to it')
    await suppressedByClaim(ids, claims)
    const missing = ids.filter((_, i) => claims[i]!.result === 'missing')
    if (missing.length > 0) {
      // Records outlive their jobs by MESSAGE_TTL_DAYS; one that is gone was removed by hand or by eviction.
      jobLog.error({ count: missing.length, messageIds: missing.slice(0, 10) }, 'send job for messages whose records are gone')
      deps.onMissing?.(missing.length)
    }
    if (unknown.length > 0) {
      let resolved: Submission[]
      try {
        resolved = await resolveUnknown(unknown, claimOptions, jobLog)
      } catch (error) {
        if (error instanceof InfobipAuthError) throw error
        return retryOrGiveUp(job, unknown, `outcome unknown, logs lookup failed: ${(error as Error).message}`)
      }
      ready.push(...resolved)
    }

    // Submit, classify, apply.
    const requests = [...inBatches(ready)]
    const retry: string[] = []
    for (let request = requests.shift(); request; request = requests.shift()) {
      const outcome = await infobip.submit(request)
      const backoffMs = backoff(job.attemptsMade + 1, deps.backoffMs)
      const plan = planSubmission(request, outcome, {
        dueSince: job.timestamp + (job.opts.delay ?? 0),
        now: Date.now(),
        backoffMs,
        accountBackoffMs: accountBackoff(),
      })
      for (const [outcome, count] of Object.entries(plan.counts)) deps.onSubmission?.(outcome as SubmissionOutcome, count)
      if (plan.settle.length > 0) await store.settle(plan.settle)
      await deps.apply(plan.transitions)
      const status = 'status' in outcome ? outcome.status : undefined
      jobLog[outcome.kind === 'accepted' ? 'info' : 'warn'](
        { outcome: outcome.kind, status, messages: request.length, applied: plan.transitions.length, retry: plan.retry.length },
        'submitted to infobip',
      )
      if (plan.giveUp) throw new UnrecoverableError(plan.giveUp)
      if (plan.accountError) return accountProblem(plan.accountError, plan.pauseMs)
      accountFailures = 0
      if (plan.lookUp.length > 0) {
        // Infobip has these from an earlier submission: its logs tell their real status. Failing that,
        // they are PENDING, and the delivery report or the reconciler will tell.
        await lookUp(plan.lookUp).catch((error: Error) => {
          if (error instanceof InfobipAuthError) throw error
          jobLog.warn({ count: plan.lookUp.length, error: error.message }, 'lookup of messages Infobip already had failed')
        })
      }
      if (plan.pauseMs !== undefined) {
        jobLog.warn({ waitMs: plan.pauseMs }, 'infobip rate limit: pausing the send queue')
        await deps.pauseQueue(plan.pauseMs)
        // Moves the job back to waiting without using up an attempt.
        throw Worker.RateLimitError()
      }
      if (plan.alone.length > 0) {
        jobLog.warn({ count: plan.alone.length }, 'infobip refused a request of several messages; retrying each alone')
        const again = await store.claim(plan.alone, { ...claimOptions, force: true })
        await suppressedByClaim(plan.alone, again)
        for (const claim of again) if (claim.result === 'ok') requests.push([claim.submission])
      }
      retry.push(...plan.retry)
    }

    // Retry or finish.
    if (retry.length > 0) await retryOrGiveUp(job, retry, `${retry.length} message(s) not accepted yet`)
  }

  /**
   * An earlier submission of these messages has no known outcome (timeout, lost connection, a worker
   * killed while waiting): ask Infobip's logs instead of risking a second SMS. Returns the messages that
   * Infobip does not know, claimed again for submission. A failed lookup throws.
   */
  async function resolveUnknown(ids: string[], claimOptions: { owner: string; busyMs: number }, jobLog: Logger): Promise<Submission[]> {
    const known = await lookUp(ids)
    const unknownToInfobip = ids.filter((id) => !known.has(id))
    jobLog.info({ found: known.size, resubmit: unknownToInfobip.length }, 'looked up messages with an unknown submission outcome')
    const claims = await store.claim(unknownToInfobip, { ...claimOptions, force: true })
    await suppressedByClaim(unknownToInfobip, claims)
    return claims.flatMap((c) => (c.result === 'ok' ? [c.submission] : []))
  }

  /** Messages whose numbers were suppressed after they were accepted: the claim made them REJECTED; their callbacks and metrics follow. */
  async function suppressedByClaim(ids: string[], claims: Claim[]): Promise<void> {
    const changes = claims.flatMap((c, i) =>
      c.result === 'suppressed' ? [madeChange(ids[i]!, c.change, { status: STATUS.REJECTED, source: 'send', error: SUPPRESSED_ERROR })] : [],
    )
    if (changes.length > 0)
      await deps.afterChanges(
        changes.map(([t]) => t),
        changes.map(([, r]) => r),
      )
  }

  /** Looks messages up in Infobip's logs and applies what it knows; returns the ids it knows. */
  async function lookUp(ids: string[]): Promise<Set<string>> {
    const wanted = new Set(ids)
    const found = (await infobip.logs(ids)).filter((r) => r.messageId !== undefined && wanted.has(r.messageId))
    await deps.apply(found.map(fromLogs))
    return new Set(found.map((r) => r.messageId!))
  }

  /**
   * Another attempt later, or, on the last one, FAILED — but only for messages Infobip does not know:
   * a submission that timed out may have been accepted, and a delivered SMS must not end FAILED.
   */
  async function retryOrGiveUp(job: Job<SendJob>, ids: string[], reason: string): Promise<never> {
    if (job.attemptsMade + 1 < (job.opts.attempts ?? deps.maxAttempts)) throw new RetryableSendError(reason)
    let known = new Set<string>()
    try {
      known = await lookUp(ids)
    } catch (error) {
      // A key that does not work fails no message; any other failed lookup leaves the messages unknown: FAILED, as configured.
      if (error instanceof InfobipAuthError) throw error
    }
    const error = { code: 'RETRIES_EXHAUSTED', message: `gave up after ${job.attemptsMade + 1} attempts: ${reason}` }
    await deps.apply(ids.filter((id) => !known.has(id)).map((id) => ({ id, status: STATUS.FAILED, source: 'send', error, settlesSubmission: true })))
    throw new UnrecoverableError(reason)
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

/** Exponential backoff with full jitter (the same curve BullMQ applies between attempts). */
export const backoff = (attempt: number, baseMs: number): number => Math.floor(Math.random() * baseMs * 2 ** (attempt - 1))
