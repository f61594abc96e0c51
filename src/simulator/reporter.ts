import { Agent, request } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import { Timers } from './timers.js'

/**
 * Posts delivery reports the way Infobip does: `{ results: [...] }` batches of up to 100 per URL,
 * collected over a short window, and a failed POST (network error or non-2xx) retried after
 * `retryUnitMs × (1 + n²)` — Infobip's "1 min + 1 min × n²" with time scaled down — then dropped.
 */
export interface ReporterOptions<T> {
  log: FastifyBaseLogger
  /** Called with the reports of each POST that succeeded. */
  onPosted: (reports: readonly T[]) => void
  /** How long reports due together wait for each other before one POST. */
  windowMs?: number
  maxBatch?: number
  retryUnitMs?: number
  maxRetries?: number
  timeoutMs?: number
}

export interface ReporterCounts {
  /** Reports in POSTs that succeeded. */
  posted: number
  /** POSTs that failed (each failed attempt counts). */
  failedPosts: number
  /** Reports given up on after the last retry. */
  dropped: number
}

export class Reporter<T extends object> {
  readonly counts: ReporterCounts = { posted: 0, failedPosts: 0, dropped: 0 }
  private readonly queues = new Map<string, T[]>()
  private readonly timers = new Timers()
  private readonly agent: Agent
  private closed = false
  private readonly windowMs: number
  private readonly maxBatch: number
  private readonly retryUnitMs: number
  private readonly maxRetries: number

  constructor(private readonly opts: ReporterOptions<T>) {
    this.windowMs = opts.windowMs ?? 25
    this.maxBatch = opts.maxBatch ?? 100
    this.retryUnitMs = opts.retryUnitMs ?? 100
    this.maxRetries = opts.maxRetries ?? 8
    const timeout = opts.timeoutMs ?? 5000
    this.agent = new Agent({ headersTimeout: timeout, bodyTimeout: timeout, connect: { timeout } })
  }

  /** Queues a report for `url`. Enqueuing the same object twice makes two separate POSTs. */
  enqueue(url: string, report: T): void {
    if (this.closed) return
    let queue = this.queues.get(url)
    if (!queue) {
      queue = []
      this.queues.set(url, queue)
      this.timers.later(this.windowMs, () => this.flush(url))
    }
    queue.push(report)
  }

  /** Stops every timer and aborts the POSTs in flight; nothing is retried afterwards. */
  async close(): Promise<void> {
    this.closed = true
    this.timers.clear()
    this.queues.clear()
    await this.agent.destroy()
  }

  private flush(url: string): void {
    const queue = this.queues.get(url) ?? []
    this.queues.delete(url)
    for (const batch of intoBatches(queue, this.maxBatch)) void this.post(url, batch, 0)
  }

  private async post(url: string, batch: T[], retry: number): Promise<void> {
    const failure = await this.send(url, JSON.stringify({ results: batch }))
    if (this.closed) return
    if (failure === undefined) {
      this.counts.posted += batch.length
      this.opts.onPosted(batch)
      return
    }
    this.counts.failedPosts++
    const target = redactUrl(url)
    if (retry >= this.maxRetries) {
      this.counts.dropped += batch.length
      this.opts.log.warn({ url: target, reports: batch.length, failure }, 'report POST failed for good; reports dropped')
      return
    }
    const n = retry + 1
    this.opts.log.info({ url: target, reports: batch.length, failure, retry: n }, 'report POST failed; will retry')
    this.timers.later(this.retryUnitMs * (1 + n * n), () => void this.post(url, batch, n))
  }

  /** Resolves to undefined on a 2xx, else to a short reason. Never rejects. */
  private async send(url: string, body: string): Promise<string | undefined> {
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json' },
        body,
      })
      await res.body.dump()
      return res.statusCode >= 200 && res.statusCode < 300 ? undefined : `HTTP ${res.statusCode}`
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? (err as Error).name
    }
  }
}

/**
 * Splits reports into POSTs of at most `max`. The same report object never appears twice in one POST:
 * a report that is to be POSTed several times (0007) goes out in separate requests.
 */
export function intoBatches<T>(items: readonly T[], max: number): T[][] {
  const batches: { items: T[]; seen: Set<T> }[] = []
  let firstOpen = 0 // batches before this one are full and never reopen
  for (const item of items) {
    while (firstOpen < batches.length && batches[firstOpen]!.items.length >= max) firstOpen++
    let target = batches.slice(firstOpen).find((b) => b.items.length < max && !b.seen.has(item))
    if (!target) {
      target = { items: [], seen: new Set() }
      batches.push(target)
    }
    target.items.push(item)
    target.seen.add(item)
  }
  return batches.map((b) => b.items)
}

/** Report URLs carry the webhook token in their query string: logs get origin and path only. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return 'invalid-url'
  }
}
