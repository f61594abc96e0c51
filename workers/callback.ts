import { DelayedError, UnrecoverableError, type Job, type Queue } from 'bullmq'
import type { Logger } from 'pino'
import { Agent, request } from 'undici'
import { guardedLookup } from '../src/callback-url.js'
import { eventId, type CallbackJob } from '../src/callbacks.js'
import type { MessageStore } from '../src/store/message-store.js'
import { signedHeaders } from '../src/webhooks.js'

const TIMEOUT_MS = 10_000

export interface CallbackDeps {
  store: MessageStore
  queue: Queue<CallbackJob>
  log: Logger
  secret: string | undefined
  allowPrivate: boolean
}

/**
 * Delivers one status change to the client's callbackUrl, signed per Standard Webhooks. Non-2xx or
 * no answer in 10 s throws (BullMQ retries with backoff); 410 Gone stops every later delivery for
 * the message. Connections go through a DNS lookup that refuses private addresses, so a host that
 * was public when the message was accepted cannot be rebound to an internal one.
 */
export function makeCallbackProcessor(deps: CallbackDeps) {
  const dispatcher = new Agent({
    connect: deps.allowPrivate ? { timeout: TIMEOUT_MS } : { timeout: TIMEOUT_MS, lookup: guardedLookup },
    keepAliveTimeout: 10_000,
  })

  async function processCallback(job: Job<CallbackJob>, token?: string): Promise<string> {
    const { url, payload } = job.data
    const log = deps.log.child({ jobId: job.id, messageId: payload.messageId, seq: payload.seq, attempt: job.attemptsMade + 1 })
    if (!deps.secret) throw new UnrecoverableError('CALLBACK_SIGNING_SECRET is not set')
    if (await deps.store.callbacksStopped(payload.messageId)) return 'stopped'
    if (await previousStillPending(payload.messageId, payload.seq)) {
      // Keep a message's events in seq order: wait (without using an attempt) for the previous one
      // to be delivered or given up.
      await job.moveToDelayed(Date.now() + 1000, token)
      throw new DelayedError()
    }

    const body = JSON.stringify(payload)
    let status: number
    try {
      const response = await request(url, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', ...signedHeaders(deps.secret, payload.eventId, body) },
        body,
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
      })
      status = response.statusCode
      await response.body.dump()
    } catch (error) {
      log.warn({ error: (error as Error).message }, 'callback not delivered')
      throw error
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
