import type { RedisClient } from './redis.js'
import { isFinal, STATUS, type Status } from './domain/status.js'
import { SUBMISSION_OUTCOMES } from './domain/submission.js'
import { INBOUND_ACTIONS } from './domain/inbound.js'
import { makeKeys } from './store/keys.js'
import type { Transition, TransitionResult } from './domain/message.js'

/**
 * The metrics that every process contributes to (docs/operations.md#metrics) and how they are shared. API and worker
 * processes are separate, yet a scrape of any API process must show what the workers counted: so
 * each process adds its increments, every second, to one Redis hash, and `/metrics` reads that hash
 * at scrape time (src/plugins/metrics.ts). Per-process metrics (HTTP latency, process stats) stay in
 * the process's own prom-client registry. No prom-client here: processors only get plain functions.
 */

export const REPORT_RESULTS = ['applied', 'duplicate', 'ignored', 'unmatched', 'invalid'] as const

export const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const

/** The values of the `tenant` label are the configured tenants' names, known only at start-up. */
export const TENANT_NAMES: readonly string[] = []

/**
 * Shared counters: name → help and the closed set of values of each label (all exposed, 0 until
 * counted; TENANT_NAMES stands for the tenants' names).
 */
export const SHARED_COUNTERS = {
  sms_messages_created_total: {
    help: 'Messages accepted by the API, by tenant (a batch of 100 adds 100; idempotent replays add nothing)',
    labels: { tenant: TENANT_NAMES },
  },
  sms_infobip_submissions_total: {
    help: 'Messages submitted to Infobip, by outcome (per message, not per request)',
    labels: { outcome: SUBMISSION_OUTCOMES },
  },
  sms_send_jobs_missing_total: {
    help: 'Messages a send job named whose records were gone (expired or removed) when it ran',
    labels: {},
  },
  sms_reports_total: {
    help: 'Delivery reports received, by what applying them did',
    labels: { result: REPORT_RESULTS },
  },
  sms_inbound_total: {
    help: 'Inbound SMS received, by what they did to their sender (repeats of a messageId count nothing)',
    labels: { action: INBOUND_ACTIONS },
  },
  sms_status_transitions_total: {
    help: 'Status changes of messages (one per event, QUEUED included), by new status and tenant',
    labels: { status: Object.values(STATUS) as readonly Status[], tenant: TENANT_NAMES },
  },
} as const

/**
 * Shared histograms. Buckets are cumulative in Redis, so changing them means deleting the hash
 * (`${KEY_PREFIX}:metrics`) when the new version is deployed.
 */
export const SHARED_HISTOGRAMS = {
  sms_submit_to_final_seconds: {
    help: 'Seconds from the last submission to Infobip to the report that made the message final',
    labels: {},
    buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600, 48 * 3600],
  },
} as const

export type CounterName = keyof typeof SHARED_COUNTERS
export type HistogramName = keyof typeof SHARED_HISTOGRAMS
type Catalogue = typeof SHARED_COUNTERS & typeof SHARED_HISTOGRAMS
/** The labels a metric takes, each with its closed set of values: `{ outcome: 'accepted' | … }`. */
export type LabelsOf<N extends keyof Catalogue> = {
  -readonly [K in keyof Catalogue[N]['labels']]: Catalogue[N]['labels'][K] extends readonly (infer V extends string)[] ? V : never
}
export type Labels = Record<string, string>

interface Log {
  warn(obj: object, msg: string): void
}

const CLOSE_TIMEOUT_MS = 2000

/**
 * Increments of this process, accumulated in memory and added to the shared Redis hash once per
 * `flushEveryMs` in one MULTI: all of a flush is applied or none, so a failed one is simply retried
 * with the next. Counting never fails or waits: a flush that fails is logged, and its increments stay
 * for the next try.
 */
export class SharedMetrics {
  readonly #redis: RedisClient
  readonly #key: string
  readonly #log: Log
  readonly #timer: NodeJS.Timeout
  /** Field → increment, for HINCRBY (counters, bucket counts) and HINCRBYFLOAT (histogram sums). */
  #counts = new Map<string, number>()
  #sums = new Map<string, number>()
  #flushing: Promise<void> | undefined
  readonly #fieldCache = new Map<string, string[]>()

  constructor(redis: RedisClient, prefix: string, log: Log, flushEveryMs = 1000) {
    this.#redis = redis
    this.#key = makeKeys(prefix).metrics()
    this.#log = log
    this.#timer = setInterval(() => void this.flush(), flushEveryMs)
    this.#timer.unref()
  }

  inc<N extends CounterName>(name: N, labels: LabelsOf<N>, n = 1): void {
    if (n > 0) add(this.#counts, this.#fields(name, labels, () => [seriesField(name, labels)])[0]!, n)
  }

  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, seconds: number): void {
    const buckets = SHARED_HISTOGRAMS[name].buckets
    // Fields: one per bucket, then +Inf, _count and _sum.
    const fields = this.#fields(name, labels, () => [
      ...buckets.map((le) => seriesField(`${name}_bucket`, { ...labels, le: String(le) })),
      seriesField(`${name}_bucket`, { ...labels, le: '+Inf' }),
      seriesField(`${name}_count`, labels),
      seriesField(`${name}_sum`, labels),
    ])
    buckets.forEach((le, i) => {
      if (seconds <= le) add(this.#counts, fields[i]!, 1)
    })
    add(this.#counts, fields[buckets.length]!, 1)
    add(this.#counts, fields[buckets.length + 1]!, 1)
    add(this.#sums, fields[buckets.length + 2]!, seconds)
  }

  /** Hash field names of a series, built once: counting runs for every report. */
  #fields(name: string, labels: object, build: () => string[]): string[] {
    const key = `${name}|${Object.values(labels).join('|')}`
    let fields = this.#fieldCache.get(key)
    if (!fields) this.#fieldCache.set(key, (fields = build()))
    return fields
  }

  /** Writes what was counted since the last flush. Never rejects; one flush at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#write().finally(() => (this.#flushing = undefined))
    return this.#flushing
  }

  /** Stops the timer and writes the rest, waiting at most 2 s (a worker's Redis may be down). */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    const last = (async () => {
      await this.#flushing
      await this.flush()
    })()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), CLOSE_TIMEOUT_MS)))
    if ((await Promise.race([last, timeout])) === 'timeout')
      this.#log.warn({ key: this.#key }, 'metrics not written to redis before closing; the last increments are lost')
    clearTimeout(timer)
  }

  async #write(): Promise<void> {
    if (this.#counts.size === 0 && this.#sums.size === 0) return
    const counts = this.#counts
    const sums = this.#sums
    this.#counts = new Map()
    this.#sums = new Map()
    const multi = this.#redis.multi()
    for (const [field, n] of counts) multi.hincrby(this.#key, field, n)
    for (const [field, x] of sums) multi.hincrbyfloat(this.#key, field, x)
    try {
      const replies = await multi.exec()
      if (!replies) throw new Error('redis transaction aborted')
      // EXEC ran: a command that failed inside it (a key of the wrong type) would fail again.
      const failed = replies.find(([error]) => error)
      if (failed) this.#log.warn({ key: this.#key, error: failed[0]!.message }, 'some metrics could not be written to redis and were dropped')
    } catch (error) {
      for (const [field, n] of counts) add(this.#counts, field, n)
      for (const [field, x] of sums) add(this.#sums, field, x)
      this.#log.warn({ key: this.#key, error: (error as Error).message }, 'could not write metrics to redis; will retry')
    }
  }
}

/**
 * The transition hook of the workers: every applied status change counts once by its new status,
 * and a final status that a report brought (not the send worker's own outcome: a 4xx, a rejection in
 * Infobip's answer, retries exhausted) is observed as submit-to-final latency.
 */
export function countTransitions(metrics: SharedMetrics) {
  return (transitions: Transition[], results: TransitionResult[]): void => {
    results.forEach((result, i) => {
      const transition = transitions[i]!
      if (result.result !== 'applied') return
      metrics.inc('sms_status_transitions_total', { status: transition.status, tenant: result.tenant })
      if (isFinal(transition.status) && transition.source !== 'send' && result.submittedAt !== null) {
        metrics.observe('sms_submit_to_final_seconds', {}, Math.max(0, Date.now() - result.submittedAt) / 1000)
      }
    })
  }
}

/** The API stored `n` new messages of a tenant, each with its QUEUED event. */
export function countCreated(metrics: SharedMetrics, n: number, tenant: string): void {
  metrics.inc('sms_messages_created_total', { tenant }, n)
  metrics.inc('sms_status_transitions_total', { status: STATUS.QUEUED, tenant }, n)
}

export interface Series {
  name: string
  labels: Labels
  value: number
}

/**
 * Everything the processes have counted, and the number of stale messages, which the reconciler keeps
 * per shard as a plain number under `keys.staleCount(shard)` (absent = 0). The commands go out together.
 */
export async function readSharedMetrics(redis: RedisClient, prefix: string, shards: number[]): Promise<{ series: Series[]; stale: number }> {
  const keys = makeKeys(prefix)
  const [hash, ...stale] = await Promise.all([redis.hgetall(keys.metrics()), ...shards.map((shard) => redis.get(keys.staleCount(shard)))])
  const series = Object.entries(hash).flatMap(([field, value]) => {
    const parsed = parseField(field)
    return parsed ? [{ ...parsed, value: Number(value) }] : []
  })
  return { series, stale: stale.reduce((sum, n) => sum + (Number(n ?? 0) || 0), 0) }
}

/** `sms_reports_total{result="applied"}`: the exposition's own notation, labels sorted. */
export function seriesField(name: string, labels: Labels): string {
  const pairs = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
  return pairs.length > 0 ? `${name}{${pairs.join(',')}}` : name
}

const FIELD = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)=("(?:[^"\\]|\\.)*")/g

function parseField(field: string): Omit<Series, 'value'> | undefined {
  const match = FIELD.exec(field)
  if (!match) return undefined
  const labels: Labels = {}
  for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = JSON.parse(value!) as string
  return { name: match[1]!, labels }
}

const add = (map: Map<string, number>, field: string, n: number) => map.set(field, (map.get(field) ?? 0) + n)
