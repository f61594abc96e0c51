import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import type { Partitioned } from '../src/queues.js'
import type { Logger } from 'pino'
import { Agent, request } from 'undici'
import { callbackUrlProblemWithoutDns, guardedLookup } from '../src/callback-url.js'
import { eventId, type CallbackJob } from '../src/callbacks.js'
import type { MessageStore } from '../src/store/message-store.js'
import { signedHeaders } from '../src/webhooks.js'
import { DEFAULT_TENANT } from '../src/tenants.js'
import { annotate, ATTR } from '../src/tracing.js'

/**
 * How much of the receiver's answer is read: only its status code matters, and reading a small answer
 * to its end keeps the connection for the next delivery.
 */
const MAX_ANSWER_BYTES = 4096

export interface CallbackDeps {
  store: MessageStore
  queue: Partitioned<CallbackJob>
  log: Logger
  /** The signing secret of a tenant's callbacks: its own `callbackSigningSecret`, else CALLBACK_SIGNING_SECRET. */
  secret: (tenant: string | undefined) => string | undefined
  allowPrivate: boolean
  /** The whole time one delivery may take: connecting, headers and body (docs/statuses.md#retries). */
  timeoutMs?: number
}

/**
 * Delivers one status change to the client's callbackUrl, signed per Standard Webhooks. Non-2xx or
 * no complete answer in 10 s throws (BullMQ retries with backoff); 410 Gone stops every later
 * delivery for the message. Connections go through a DNS lookup that refuses private addresses, so a
 * host that was public when the message was accepted cannot be rebound to an internal one.
 */
export function makeCallbackProcessor(deps: CallbackDeps) {
  const timeoutMs = deps.timeoutMs ?? 10_000
  const dispatcher = new Agent({
    connect: deps.allowPrivate ? { timeout: timeoutMs } : { timeout: timeoutMs, lookup: guardedLookup },
    keepAliveTimeout: 10_000,
  })

  async function processCallback(job: Job<CallbackJob>, token?: string): Promise<string> {
    const { url, payload } = job.data
    const tenant = job.data.tenant ?? DEFAULT_TENANT
    const log = deps.log.child({ jobId: job.id, tenant, messageId: payload.messageId, seq: payload.seq, attempt: job.attemptsMade + 1 })
    annotate({ [ATTR.tenant]: tenant, [ATTR.status]: payload.status }, [payload.messageId])
    const secret = deps.secret(tenant)
    if (!secret) throw new UnrecoverableError('no callback signing secret: set CALLBACK_SIGNING_SECRET or the tenant’s callbackSigningSecret')
    // undici connects to an IP literal without calling `guardedLookup`, so such a host is checked
    // here; a refused URL (docs/api.md#send-one-message) stays refused however often it is tried.
    const refused = callbackUrlProblemWithoutDns(url, deps.allowPrivate)
    if (refused) {
      log.warn({ reason: refused }, 'callback URL refused')
      throw new UnrecoverableError(`callback URL is refused: ${refused}`)
    }
    if (await deps.store.callbacksStopped(payload.messageId)) return 'stopped'
    if (await previousStillPending(payload.messageId, payload.seq)) {
      // Keep a message's events in seq order: wait (without using an attempt) for the previous one
      // to be delivered or given up.
      await job.moveToDelayed(Date.now() + 1000, token)
      throw new DelayedError()
    }

    const body = JSON.stringify(payload)
    let status: number
    // One deadline for the whole delivery: undici's own timeouts restart at every byte, so a receiver
    // that trickles its answer would hold this worker forever.
    const deadline = AbortSignal.timeout(timeoutMs)
    try {
      const response = await request(url, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', ...signedHeaders(secret, payload.eventId, body) },
        body,
        signal: deadline,
      })
      status = response.statusCode
      await response.body.dump({ limit: MAX_ANSWER_BYTES, signal: deadline })
    } catch (error) {
      const reason = deadline.aborted ? new Error(`callback receiver gave no complete answer within ${timeoutMs} ms`) : (error as Error)
      log.warn({ error: reason.message }, 'callback not delivered')
      throw reason
    }
    if (status === 410) {
      await deps.store.stopCallbacks(payload.messageId)
      log.info('callback receiver answered 410 Gone: no more callbacks for this message')
      return 'gone'
    }
    if (status < 200 || status >= 300) {
      log.warn({ status }, 'callback receiver refused')
      throw new Error(`callback receiver answered ${status}`)
    }
    log.debug({ status }, 'callback delivered')
    return 'delivered'
  }

  /** The previous event's callback still waits for delivery (QUEUED, seq 1, has none). */
  async function previousStillPending(messageId: string, seq: number): Promise<boolean> {
    if (seq <= 2) return false
    const previous = await deps.queue.getJob(eventId(messageId, seq - 1))
    if (!previous) return false
    const state = await previous.getState()
    return state !== 'completed' && state !== 'failed' && state !== 'unknown'
  }

  return Object.assign(processCallback, { close: () => dispatcher.close() })
}
