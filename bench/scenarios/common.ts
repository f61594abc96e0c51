import { DEFAULT_TENANT } from '../../src/tenants.js'
import { basename, join } from 'node:path'
import type { Redis } from 'ioredis'
import { newMessageId } from '../../src/accept-messages.js'
import { parseBatch } from '../../src/domain/reports.js'
import { STATUSES } from '../../src/simulator/outcomes.js'
import type { MessageStore } from '../../src/store/message-store.js'
import type { NewMessage, Transition } from '../../src/domain/message.js'
import { deliveredReports, failures, fire, TEXT, type LoadResult } from '../load.js'
import { cpuMeter, describeCpu, type Child, type CpuUse } from '../processes.js'
import { redisCpuSeconds } from '../redis.js'
import { check, progress, type Check } from '../report.js'
import type { BenchSettings } from '../service.js'

/** What every scenario gets, and the steps several of them share. */

export interface Ctx {
  settings: BenchSettings
  redis: Redis
  /** Unique per run: every scenario's KEY_PREFIX starts with it. */
  runId: string
  /** Seconds of each timed HTTP load (after a warm-up). */
  seconds: number
  connections: number
}

export const BATCH = 100
export const TTL_DAYS = 30

export const prefixOf = (ctx: Ctx, scenario: string): string => `${ctx.runId}-${scenario}`

/** First warm-up, in requests per kind of body: well under a second's worth on a laptop. */
export const WARM = { single: 2000, batch: 100, dlr: 300 }
/** Then this many seconds more at the rate the first warm-up saw: V8 optimises the hot paths meanwhile. */
const WARM_SECONDS = 2

/**
 * A warm-up (JIT, connection pools), then the timed run of about `seconds` worth of requests at the
 * warm-up's rate, with the CPU of `children` metered over the timed run only. Every load sends a fixed
 * number of requests and waits for every answer, so that what the server stored can be compared
 * exactly with what it acknowledged (`acknowledged` counts the warm-ups too).
 */
export async function warmThenFire(
  ctx: Ctx,
  children: Child[],
  url: string,
  body: string | undefined,
  warmRequests: number,
  headers: Record<string, string> = {},
) {
  const load = (amount: number) => fire({ url, body, headers, connections: ctx.connections, amount })
  const rate = (r: LoadResult) => (r.ok + r.non2xx) / r.seconds
  const first = await load(warmRequests)
  const second = await load(Math.max(ctx.connections, Math.round(rate(first) * WARM_SECONDS)))
  const meter = await startMeter(ctx, children)
  const run = await load(Math.max(ctx.connections, Math.round(rate(second) * ctx.seconds * 1.2)))
  const cpu = await meter()
  return { run, cpu, acknowledged: first.ok + second.ok + run.ok }
}

export const noFailures = (what: string, r: LoadResult): Check =>
  check(`${what} all 2xx`, failures(r) === 0, `${what}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`)

export interface Meter {
  use: CpuUse
  redisSeconds: number
  /** `api 95%, load generator 80%, redis 40%, other processes 5%`. */
  text: string
}

/**
 * CPU of our processes, the load generator, Redis and everything else, from now until the call. When
 * profiling, says where this stretch starts in each child's profile (for `bench/profile-top.ts --from`).
 */
export async function startMeter(ctx: Ctx, children: Child[]): Promise<() => Promise<Meter>> {
  const { profileDir } = ctx.settings
  if (profileDir) {
    for (const child of children) {
      const dir = join(profileDir, basename(child.log, '.log'))
      progress(`  profile of ${child.name} in ${dir}: the measured stretch starts at ${((performance.now() - child.startedAt) / 1000).toFixed(1)} s`)
    }
  }
  const cpu = cpuMeter(children)
  const redis0 = await redisCpuSeconds(ctx.redis)
  return async () => {
    const use = cpu()
    const redisSeconds = (await redisCpuSeconds(ctx.redis)) - redis0
    otherLoad.push(Math.max(0, use.others - redisSeconds) / use.seconds)
    return { use, redisSeconds, text: `CPU: ${describeCpu(use, redisSeconds)}` }
  }
}

/** Cores used by processes that are not the benchmark's, Redis or ours, in each measured stretch. */
export const otherLoad: number[] = []

/** `0.21 ms` of a process's CPU per unit of work. */
export const cpuPer = (meter: Meter, child: Child, units: number, unit: string): string =>
  `${child.name} CPU per ${unit}: ${(((meter.use.byChild[child.name] ?? 0) / units) * 1000).toFixed(3)} ms`

/** Runs `work` on chunks of 1,000 items, four chunks at a time. */
async function inChunks<T>(items: T[], work: (chunk: T[]) => Promise<void>): Promise<void> {
  const chunks = Array.from({ length: Math.ceil(items.length / 1000) }, (_, i) => items.slice(i * 1000, (i + 1) * 1000))
  await Promise.all(
    Array.from({ length: 4 }, async (_, lane) => {
      for (let i = lane; i < chunks.length; i += 4) await work(chunks[i]!)
    }),
  )
}

/** Stores `count` messages through the service's own store, as the API does (record, QUEUED event, outbox). */
export async function storeMessages(store: MessageStore, count: number): Promise<string[]> {
  const messages: NewMessage[] = Array.from({ length: count }, (_, i) => ({
    id: newMessageId(),
    tenant: DEFAULT_TENANT,
    to: `4179${3_021_100 + (i % 8000)}`,
    from: 'InfoSMS',
    text: TEXT,
    encoding: 'GSM-7',
    segments: 1,
  }))
  await inChunks(messages, async (chunk) => {
    await store.create(chunk)
    await store.removeFromOutbox(chunk.map((m) => m.id))
  })
  return messages.map((m) => m.id)
}

/** What the send worker does to them: claim, then PENDING with Infobip's answer. */
export async function markPending(store: MessageStore, ids: string[]): Promise<void> {
  await inChunks(ids, async (chunk) => {
    await store.claim(chunk, { owner: 'bench', busyMs: 15_000 })
    await store.transition(
      chunk.map((id): Transition => ({
        id,
        status: 'PENDING',
        source: 'send',
        infobipStatus: STATUSES.PENDING_ACCEPTED.name,
        infobip: { messageId: id, bulkId: 'bench-bulk', status: STATUSES.PENDING_ACCEPTED, messageCount: 1 },
        settlesSubmission: true,
      })),
    )
  })
}

/** What the dlr worker does with their DELIVERED reports; returns how many were applied. */
export async function deliver(store: MessageStore, ids: string[]): Promise<number> {
  let applied = 0
  await inChunks(ids, async (chunk) => {
    const results = await store.transition(parseBatch(deliveredReports(chunk)).transitions)
    applied += results.filter((r) => r.result === 'applied').length
  })
  return applied
}
