import autocannon from 'autocannon'
import { newMessageId } from '../src/accept-messages.js'
import { deliveryReport, STATUSES, ERRORS, type SentMessage } from '../src/simulator/outcomes.js'

/** HTTP load (autocannon, in the bench process) and the request bodies it sends. */

export const API_KEY = 'bench-api-key-0123456789'
export const DLR_TOKEN = 'bench-dlr-token-0123456789'
export const INFOBIP_KEY = 'bench-infobip-key'

export interface LoadResult {
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  seconds: number
  /** 2xx answers per second. */
  perSecond: number
  p50Ms: number
  p99Ms: number
}

export interface LoadOptions {
  url: string
  /** A POST's body; without one, the load is GETs. */
  body?: string | undefined
  headers?: Record<string, string>
  connections: number
  /** Seconds to run; or `amount` requests, whichever is given. */
  duration?: number
  amount?: number
}

export async function fire(options: LoadOptions): Promise<LoadResult> {
  const t0 = performance.now()
  let lastAnswer = t0
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        ...(options.body === undefined
          ? { method: 'GET' as const, headers: options.headers ?? {} }
          : { method: 'POST' as const, headers: { 'content-type': 'application/json', ...options.headers }, body: options.body }),
        connections: options.connections,
        ...(options.amount !== undefined ? { amount: options.amount } : { duration: options.duration ?? 5 }),
        timeout: 30,
      },
      (error, result) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(result)),
    )
    instance.on('response', () => (lastAnswer = performance.now()))
  })
  // autocannon notices that an amount is done on its once-a-second tick and reports whole seconds:
  // the run lasts until its last answer.
  const seconds = (lastAnswer - t0) / 1000
  const ok = result['2xx']
  return {
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds,
    perSecond: ok / seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  }
}

/** Anything but 2xx in a load run, for a check's detail. */
export const failures = (r: LoadResult): number => r.non2xx + r.errors + r.timeouts

export const bearer = { authorization: `Bearer ${API_KEY}` }

/** A 20-character text, as the memory target is stated for. */
export const TEXT = 'Your code is 123456!'

/** Numbers whose last four digits give the simulator's default outcome (DELIVERED). */
const phone = (i: number) => `+4179${String(3_021_100 + (i % 8_000)).padStart(7, '0')}`

export const messageBody = (i = 0) => ({ to: phone(i), text: TEXT })

export const batchBody = (n: number) => JSON.stringify({ messages: Array.from({ length: n }, (_, i) => messageBody(i)) })

/** Reports as the simulator (and Infobip v3) posts them: DELIVERED_TO_HANDSET for each id. */
export function deliveredReports(ids: string[], sentAt = Date.now()) {
  return ids.map((messageId, i) => {
    const sent: SentMessage = { api: 'v3', bulkId: `bench-${sentAt}`, messageId, to: phone(i).slice(1), sender: 'InfoSMS', messageCount: 1, sentAt }
    return deliveryReport(sent, { status: STATUSES.DELIVERED_TO_HANDSET, error: ERRORS.NO_ERROR, posts: 1 }, sentAt + 1000)
  })
}

/** One POST to /infobip-dlr: `n` DELIVERED reports (for ids nobody stored: only acknowledging is measured). */
export const dlrBody = (n = 100) => JSON.stringify({ results: deliveredReports(Array.from({ length: n }, () => newMessageId())) })
