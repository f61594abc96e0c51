import { partitionPrefix } from '../../src/queues.js'
import { Queue } from 'bullmq'
import { batchBody, bearer, fire, messageBody } from '../load.js'
import { rss, stop, until, type Child } from '../processes.js'
import { cleanup, recordKeys, statusCounts } from '../redis.js'
import { check, equal, progress, type Check, type Row } from '../report.js'
import { pendingJobs, simStats, startApi, startWorkerProcesses, type Http, type SimStats } from '../service.js'
import { BATCH, noFailures, prefixOf, startMeter, type Ctx, type Meter } from './common.js'

export const SIM_LATENCY_MS = 50
export const SEND_CONCURRENCY = 50

export interface EndToEnd {
  rows: Row[]
  peakRssMb: { api: number; worker: number }
}

/** What sets a run apart: environment for the API and the workers (tracing), and the words that say so in its rows. */
export interface EndToEndOptions {
  env?: Record<string, string>
  label?: string
}

/**
 * `total` messages through the API — single POSTs or batches of 100 — to `processes` worker processes
 * (WORKER_QUEUES=send,dlr each), the simulator answering after 50 ms and POSTing a DELIVERED report for
 * each message back to the API. After a warm-up of a tenth as many messages, delivered first, timed from
 * the first request until every message is PENDING (the send queue is empty: a send job completes after
 * its PENDING transition) and until every one is DELIVERED.
 */
export async function endToEnd(
  ctx: Ctx,
  sim: Http,
  mode: 'single' | 'batch',
  processes: number,
  total: number,
  ceiling: number,
  options: EndToEndOptions = {},
): Promise<EndToEnd> {
  const name = `e2e-${mode}-${processes}${options.label ? `-${options.label.replace(/\W+/g, '-')}` : ''}`
  const warmMessages = warmUpOf(total)
  const prefix = prefixOf(ctx, name)
  const api = await startApi(ctx.settings, 'api', prefix, { OTEL_SERVICE_NAME: 'sms-api', ...options.env })
  const sendQueue = new Queue('send', { connection: ctx.redis, prefix: partitionPrefix({ KEY_PREFIX: prefix }, 0) })
  const dlrQueue = new Queue('dlr', { connection: ctx.redis, prefix: partitionPrefix({ KEY_PREFIX: prefix }, 0) })
  let workers: Child[] = []
  try {
    workers = await startWorkerProcesses(ctx.settings, ctx.redis, 'worker', prefix, processes, 'send,dlr', {
      INFOBIP_BASE_URL: sim.url,
      PUBLIC_BASE_URL: api.url,
      SEND_CONCURRENCY: String(SEND_CONCURRENCY),
      OTEL_SERVICE_NAME: 'sms-worker',
      ...options.env,
    })
    const perRequest = mode === 'single' ? 1 : BATCH
    const send = (messages: number) =>
      fire({
        url: `${api.url}/messages${mode === 'single' ? '' : '/batch'}`,
        body: mode === 'single' ? JSON.stringify(messageBody()) : batchBody(BATCH),
        headers: bearer,
        connections: Math.min(ctx.connections, messages / perRequest),
        amount: messages / perRequest,
      })
    const first = await simStats(sim)
    const allDelivered = (since: SimStats, messages: number) =>
      until(
        async () => {
          const now = await simStats(sim)
          if (now.reportsDropped > since.reportsDropped) {
            throw new Error(`the simulator gave up on ${now.reportsDropped - since.reportsDropped} reports: the API kept refusing them (see ${api.child.log})`)
          }
          return now.reportsPosted - since.reportsPosted >= messages && (await pendingJobs(dlrQueue)) === 0
        },
        'every message to be DELIVERED',
        120_000,
        20,
      )
    // A warm-up through the whole system (V8 optimises the hot paths of every process), delivered before the clock starts.
    const warm = await send(warmMessages)
    await allDelivered(first, warmMessages)

    const before = await simStats(sim)
    const meter = await startMeter(ctx, [api.child, ...workers])
    const t0 = performance.now()
    const load = await send(total)
    progress(`  ${(load.ok * perRequest).toLocaleString('en-US')} messages accepted in ${load.seconds.toFixed(1)} s; waiting for PENDING`)
    await until(async () => (await pendingJobs(sendQueue)) === 0, 'every message to be PENDING', 120_000, 10)
    const pendingSeconds = (performance.now() - t0) / 1000
    progress(`  all PENDING after ${pendingSeconds.toFixed(1)} s; waiting for DELIVERED`)
    await allDelivered(before, total)
    const deliveredSeconds = (performance.now() - t0) / 1000
    const cpu = await meter()
    const peakRssMb = { api: rss(api.child).peakMb, worker: Math.max(...workers.map((w) => rss(w).peakMb)) }

    const after = await simStats(sim)
    const keys = await recordKeys(ctx.redis, prefix)
    const statuses = await statusCounts(ctx.redis, keys)
    // The checks cover the warm-up's messages too.
    const all = warmMessages + total
    const checks = [
      noFailures('API', load),
      noFailures('API (warm-up)', warm),
      equal('messages acknowledged (2xx)', (warm.ok + load.ok) * perRequest, all),
      equal('records', keys.length, all),
      equal('records DELIVERED', statuses.DELIVERED ?? 0, all),
      equal('accepted by the simulator (none submitted twice)', after.accepted - first.accepted, all),
      await submittedOnce(sim, keys, 50),
      equal('reports acknowledged by the API', after.reportsPosted - first.reportsPosted, all),
      equal('reports dropped by the simulator after its retries', after.reportsDropped - first.reportsDropped, 0),
      equal('failed send jobs', await sendQueue.getJobCountByTypes('failed'), 0),
      equal('failed dlr jobs', await dlrQueue.getJobCountByTypes('failed'), 0),
    ]
    const label = `e2e, ${mode === 'single' ? 'single POSTs' : `batches of ${BATCH}`}, ${processes} worker process${processes > 1 ? 'es' : ''}${options.label ? `, ${options.label}` : ''}`
    const ceilingName = mode === 'single' ? `Little's law: ${processes} × ${SEND_CONCURRENCY} ÷ ${SIM_LATENCY_MS} ms` : 'POST /messages/batch alone'
    const pendingRate = total / pendingSeconds
    const target =
      processes < 2
        ? undefined
        : mode === 'single'
          ? { text: "≥ 75% of Little's law", met: pendingRate >= 0.75 * ceiling }
          : { text: '≥ 10,000 msg/s submitted', met: pendingRate >= 10_000 }
    return {
      peakRssMb,
      rows: [
        {
          scenario: `${label}: until all PENDING`,
          figure: pendingRate,
          unit: 'msg/s',
          ceiling: { name: ceilingName, value: ceiling },
          ...(target ? { target } : {}),
          checks,
          notes: `${total.toLocaleString('en-US')} messages after a warm-up of ${warmMessages.toLocaleString('en-US')}; the API acknowledged them in ${load.seconds.toFixed(1)} s (p99 ${load.p99Ms} ms); report POSTs the simulator had to retry: ${after.reportPostsFailed - before.reportPostsFailed}`,
        },
        {
          scenario: `${label}: until all DELIVERED`,
          figure: total / deliveredSeconds,
          unit: 'msg/s',
          ceiling: { name: ceilingName, value: ceiling },
          checks: [],
          notes: `checks in the row above; SIM_DLR_DELAY_MS 200; ${cpu.text}; CPU per message: ${cpuPerMessage(cpu, api.child, workers, total)}`,
        },
      ],
    }
  } finally {
    await Promise.all(workers.map((w) => stop(w)))
    await sendQueue.close()
    await dlrQueue.close()
    await stop(api.child)
    await cleanup(ctx.redis, prefix)
  }
}

/** Messages sent through the whole system before a run's clock starts. */
export const warmUpOf = (total: number): number => Math.max(BATCH, Math.round(total / 10 / BATCH) * BATCH)

/** `api 0.61 ms, workers 0.80 ms, redis 0.35 ms`: where the machine's CPU went, per message delivered. */
function cpuPerMessage(cpu: Meter, api: Child, workers: Child[], total: number): string {
  const ms = (seconds: number) => `${((seconds / total) * 1000).toFixed(2)} ms`
  const workerSeconds = workers.reduce((sum, w) => sum + (cpu.use.byChild[w.name] ?? 0), 0)
  return `api ${ms(cpu.use.byChild[api.name] ?? 0)}, workers ${ms(workerSeconds)}, redis ${ms(cpu.redisSeconds)}`
}

/** Asks the simulator about a sample of the messages: each was submitted exactly once. */
async function submittedOnce(sim: Http, keys: string[], sample: number): Promise<Check> {
  const step = Math.max(1, Math.floor(keys.length / sample))
  let wrong = 0
  let checked = 0
  for (let i = 0; i < keys.length; i += step) {
    const id = keys[i]!.slice(keys[i]!.lastIndexOf(':') + 1)
    const view = (await (await fetch(`${sim.url}/_sim/messages/${id}`)).json()) as { submissions?: number }
    checked++
    if (view.submissions !== 1) wrong++
  }
  return check('sampled messages submitted once', wrong === 0, `${wrong} of ${checked} sampled messages not submitted exactly once`)
}
