import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { partitionPrefix, dlrJobOptions } from '../../src/queues.js'
import { MessageStore } from '../../src/store/message-store.js'
import { deliveredReports } from '../load.js'
import { stop, until, type Child } from '../processes.js'
import { cleanup, statusCounts } from '../redis.js'
import { equal, progress, type Row } from '../report.js'
import { pendingJobs, startWorkerProcesses } from '../service.js'
import type { HsetCeiling } from './ceilings.js'
import { BATCH, markPending, prefixOf, startMeter, storeMessages, TTL_DAYS, type Ctx } from './common.js'

/**
 * Reports applied by `processes` dlr worker processes (workers/index.ts, WORKER_QUEUES=dlr) from a
 * pre-filled queue: `messages` PENDING messages with one DELIVERED report each, in jobs of 100 as the
 * API stores them, plus `resent` jobs POSTed twice (as Infobip does after a timeout). The queue is paused
 * while it fills and resumed once the workers are up; the clock runs from the end of the first
 * `WARM_JOBS` jobs to the last job.
 */
const WARM_JOBS = 40

export async function dlrWorkers(ctx: Ctx, processes: number, hset: HsetCeiling, messages = 40_000, resent = 20): Promise<Row> {
  const prefix = prefixOf(ctx, `dlr-worker-${processes}`)
  const store = new MessageStore(ctx.redis, { prefix, ttlDays: TTL_DAYS })
  const queue = new Queue('dlr', { connection: ctx.redis, prefix: partitionPrefix({ KEY_PREFIX: prefix }, 0) })
  let workers: Child[] = []
  try {
    progress(`  filling: ${messages.toLocaleString('en-US')} PENDING messages, their reports in ${messages / BATCH + resent} jobs`)
    const ids = await storeMessages(store, messages)
    await markPending(store, ids)
    await queue.pause()
    const jobs = []
    for (let i = 0; i < ids.length; i += BATCH)
      jobs.push({ name: 'dlr', data: { body: JSON.stringify({ results: deliveredReports(ids.slice(i, i + BATCH)) }) }, opts: dlrJobOptions })
    jobs.push(...jobs.slice(0, resent))
    for (let i = 0; i < jobs.length; i += 50) await queue.addBulk(jobs.slice(i, i + 50))
    const reports = messages + resent * BATCH

    workers = await startWorkerProcesses(ctx.settings, ctx.redis, 'worker', prefix, processes, 'dlr')
    await queue.resume()
    // The first jobs warm the processes up (V8 optimises the hot paths); the clock starts after them.
    await until(async () => (await dlrResults(ctx.redis, prefix)).jobs >= WARM_JOBS, 'the warm-up jobs', 60_000, 5)
    const warm = await dlrResults(ctx.redis, prefix)
    const meter = await startMeter(ctx, workers)
    const t0 = performance.now()
    await until(async () => (await pendingJobs(queue)) === 0, 'the dlr queue to drain', 60_000, 10)
    const seconds = (performance.now() - t0) / 1000
    const cpu = await meter()
    const workerCpu = workers.reduce((sum, w) => sum + (cpu.use.byChild[w.name] ?? 0), 0)

    const { jobs: completed, counts } = await dlrResults(ctx.redis, prefix)
    const statuses = await statusCounts(
      ctx.redis,
      ids.map((id) => store.keys.message(id)),
    )
    // Jobs still running when the clock started count as timed: a slight overestimate (≤ 4 jobs per process).
    const timed = reports - Object.values(warm.counts).reduce((a, b) => a + b, 0)
    const rate = timed / seconds
    return {
      scenario: `dlr worker: ${processes} process${processes > 1 ? 'es' : ''}, pre-filled queue`,
      figure: rate,
      unit: 'reports/s',
      ceiling: { name: 'pipelined HSET ops/s', value: hset.opsPerSecond },
      ...(processes === 1 ? { target: { text: '≥ 30,000 reports/s', met: rate >= 30_000 } } : {}),
      checks: [
        equal('jobs completed', completed, jobs.length),
        equal('failed jobs', await queue.getJobCountByTypes('failed'), 0),
        equal('reports applied', counts.applied ?? 0, messages),
        equal('reports duplicate', counts.duplicate ?? 0, resent * BATCH),
        equal(
          'applied + duplicate + ignored + unmatched + invalid = sent',
          Object.values(counts).reduce((a, b) => a + b, 0),
          reports,
        ),
        equal('records DELIVERED', statuses.DELIVERED ?? 0, messages),
      ],
      notes: `${timed.toLocaleString('en-US')} reports in ${seconds.toFixed(2)} s after ${warm.jobs} warm-up jobs; ${cpu.text}; worker CPU per report: ${((workerCpu / timed) * 1e6).toFixed(0)} µs, Redis CPU per report: ${((cpu.redisSeconds / timed) * 1e6).toFixed(0)} µs`,
    }
  } finally {
    await Promise.all(workers.map((w) => stop(w)))
    await queue.close()
    await cleanup(ctx.redis, prefix)
  }
}

/** Sums the counts the dlr processor returned, from the queue's event stream (jobs themselves are removed). */
async function dlrResults(redis: Redis, prefix: string): Promise<{ jobs: number; counts: Record<string, number> }> {
  const entries = await redis.xrange(`${partitionPrefix({ KEY_PREFIX: prefix }, 0)}:dlr:events`, '-', '+')
  const counts: Record<string, number> = {}
  let jobs = 0
  for (const [, fields] of entries) {
    const data: Record<string, string> = {}
    for (let i = 0; i < fields.length; i += 2) data[fields[i]!] = fields[i + 1]!
    if (data.event !== 'completed') continue
    jobs++
    for (const [result, n] of Object.entries(JSON.parse(data.returnvalue ?? '{}') as Record<string, number>)) counts[result] = (counts[result] ?? 0) + n
  }
  return { jobs, counts }
}
