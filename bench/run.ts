import { existsSync, mkdtempSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { killAllNow, ROOT, stop, stopAll } from './processes.js'
import { cleanupRun, connect, REDIS_URL } from './redis.js'
import { check, elapsedSeconds, markdownTable, progress, writeResults, type Row } from './report.js'
import { postBatch, postDlr, postMessages } from './scenarios/api.js'
import { againstBaselines, atBuild } from './scenarios/baseline.js'
import { bareFastify, pipelinedHset } from './scenarios/ceilings.js'
import { BATCH, otherLoad, type Ctx } from './scenarios/common.js'
import { dlrWorkers } from './scenarios/dlr-worker.js'
import { endToEnd, SEND_CONCURRENCY, SIM_LATENCY_MS, warmUpOf } from './scenarios/end-to-end.js'
import { memoryPerMessage } from './scenarios/memory.js'
import { spreadRun, type Spread } from './scenarios/cluster.js'
import { sinkStats, startOtlpSink, startSimulator } from './service.js'

/**
 * `npm run bench`: every scenario of the benchmark issue against the Redis at REDIS_URL, each figure
 * next to a ceiling measured in the same run. Progress on stderr, one markdown table on stdout, JSON in
 * bench/results/. Knobs (environment):
 *   BENCH_SECONDS        timed seconds per HTTP load (default 5, after a warm-up)
 *   BENCH_E2E_MESSAGES   messages per end-to-end run (default 20000, fewer if the time budget demands it)
 *   BENCH_BUDGET_SECONDS the whole run's budget (default 285): the end-to-end runs shrink to fit it
 *   BENCH_TRACING_MESSAGES messages per run of e2e-tracing, tracing off then on (default 5000)
 *   BENCH_LOG_LEVEL      LOG_LEVEL of the service's processes (default info, the product default)
 *   BENCH_ONLY           comma-separated scenario names to run (ceilings always run)
 *   BENCH_BASELINE       comma-separated git refs of earlier builds: their API runs beside this one's (scenario baseline)
 *   BENCH_CLUSTER_MESSAGES messages per run of e2e-cluster (default 10000): one Redis, then the
 *                        Redis Cluster of .ci/redis-topologies.sh with QUEUE_PARTITIONS 3 and 6
 *   BENCH_PROFILE=1      start the service's processes with --cpu-prof (profiles in bench/results/profiles/)
 */

const env = process.env
const SCENARIOS = ['memory', 'post-single', 'post-batch', 'post-dlr', 'dlr-worker', 'e2e', 'e2e-tracing', 'e2e-cluster', 'baseline'] as const
const only = new Set((env.BENCH_ONLY ?? SCENARIOS.join(',')).split(',').map((s) => s.trim()))
const stamp = new Date().toISOString().replace(/[:.]/g, '-')
const resultsDir = join(ROOT, 'bench', 'results')
const e2eRequested = Number(env.BENCH_E2E_MESSAGES ?? 20_000)
const budgetSeconds = Number(env.BENCH_BUDGET_SECONDS ?? 285)
const tracingMessages = Number(env.BENCH_TRACING_MESSAGES ?? 5000)
let e2eMessages = e2eRequested
let e2eReduced = ''

const rows: Row[] = []
const redis = connect()
const ctx: Ctx = {
  settings: {
    logLevel: env.BENCH_LOG_LEVEL ?? 'info',
    logDir: mkdtempSync(join(tmpdir(), 'sms-bench-')),
    profileDir: env.BENCH_PROFILE === '1' ? join(resultsDir, 'profiles', stamp) : undefined,
  },
  redis,
  runId: `bench-${randomBytes(3).toString('hex')}`,
  seconds: Number(env.BENCH_SECONDS ?? 5),
  connections: 100,
}

/** Runs one scenario; a failure becomes a failed row and the run goes on with the next one. */
async function scenario<T>(name: string, run: () => Promise<T>): Promise<T | undefined> {
  progress(`${name}…`)
  const t0 = Date.now()
  try {
    const result = await run()
    progress(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    return result
  } catch (error) {
    progress(`${name}: FAILED: ${(error as Error).message}`)
    rows.push({ scenario: name, figure: NaN, unit: '', checks: [check('ran', false, `did not complete: ${(error as Error).message.split('\n')[0]}`)] })
    return undefined
  }
}

async function main(): Promise<void> {
  await redis.ping().catch(() => {
    throw new Error(`Redis is not reachable at REDIS_URL=${REDIS_URL}: start it (redis-server --daemonize yes) or set REDIS_URL.`)
  })
  progress(`run ${ctx.runId}: ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(2)}, logs in ${ctx.settings.logDir}`)

  const bare = await scenario('ceiling: bare Fastify', () => bareFastify(ctx))
  const hset = await scenario('ceiling: pipelined HSET', () => pipelinedHset(ctx))
  if (bare) rows.push(...bare.rows)
  if (hset) rows.push(hset.row)
  if (!bare || !hset) throw new Error('the ceilings could not be measured')

  if (only.has('memory')) rows.push(...((await scenario('memory per message', () => memoryPerMessage(ctx, hset))) ?? []))
  let batchRate: number | undefined
  let singleRate: number | undefined
  if (only.has('post-single')) {
    const run = await scenario('POST /messages', () => postMessages(ctx, bare.ceilings))
    rows.push(...(run?.rows ?? []))
    singleRate = run?.rows[0]?.figure
  }
  if (only.has('post-batch')) {
    const row = await scenario('POST /messages/batch', () => postBatch(ctx, bare.ceilings))
    if (row) rows.push(row)
    batchRate = row?.figure
  }
  if (only.has('post-dlr')) {
    const row = await scenario('POST /infobip-dlr', () => postDlr(ctx, bare.ceilings))
    if (row) rows.push(row)
  }
  if (only.has('dlr-worker')) {
    for (const processes of [1, 2]) {
      const row = await scenario(`dlr worker × ${processes}`, () => dlrWorkers(ctx, processes, hset))
      if (row) rows.push(row)
    }
  }
  if (only.has('e2e')) {
    fitEndToEndInBudget(singleRate ?? bare.ceilings.single.perSecond, batchRate ?? bare.ceilings.batch.perSecond * BATCH)
    await endToEndRuns(batchRate ?? bare.ceilings.batch.perSecond * BATCH)
  }
  if (only.has('e2e-tracing')) await tracingRuns()
  if (only.has('e2e-cluster')) await clusterRuns()
  const baselines = baselineRefs()
  if (only.has('baseline') && baselines.length > 0) rows.push(...((await scenario('against earlier builds', () => againstBaselines(ctx, baselines))) ?? []))
}

/**
 * Fewer messages per end-to-end run when the four runs would not fit in what is left of the budget.
 * The API shares the machine with the workers there, so it is assumed to reach half the rate it had
 * alone; the send workers at most Little's law; each run costs ~6 s of starting and stopping.
 */
function fitEndToEndInBudget(singleRate: number, batchRate: number): void {
  const secondsPerMessage =
    [1, 2].reduce((sum, w) => sum + 1 / Math.min(singleRate / 2, (w * SEND_CONCURRENCY) / (SIM_LATENCY_MS / 1000)), 0) + 2 / (batchRate / 2)
  // The tracing runs come after these and are not shrunk: their time is kept aside (two runs at the single-POST pace).
  const tracingSeconds = only.has('e2e-tracing') ? 2 * (6 + (tracingMessages * 1.1) / Math.min(singleRate / 2, SEND_CONCURRENCY / (SIM_LATENCY_MS / 1000))) : 0
  const left = budgetSeconds - elapsedSeconds() - 4 * 6 - tracingSeconds
  // Each run first sends a tenth as many messages as a warm-up.
  const fits = Math.floor(left / (secondsPerMessage * 1.1) / 1000) * 1000
  if (fits >= e2eMessages) return
  e2eMessages = Math.max(2000, fits)
  e2eReduced = ` (reduced from ${e2eRequested.toLocaleString('en-US')} to fit the ${budgetSeconds}-second budget: POST /messages ran at ${Math.round(singleRate)} req/s here)`
  progress(`end-to-end runs reduced to ${e2eMessages.toLocaleString('en-US')} messages each${e2eReduced}`)
}

/** The four end-to-end runs share one simulator; the worker with the most RSS makes the RSS row. */
async function endToEndRuns(batchRate: number): Promise<void> {
  const sim = await scenario('simulator', () => startSimulator(ctx.settings, SIM_LATENCY_MS))
  if (!sim) return
  let workerPeakMb = 0
  let apiPeakMb = 0
  try {
    for (const mode of ['single', 'batch'] as const) {
      for (const processes of [1, 2]) {
        const ceiling = mode === 'single' ? (processes * SEND_CONCURRENCY) / (SIM_LATENCY_MS / 1000) : batchRate
        const run = await scenario(`e2e ${mode} × ${processes} worker(s)`, () => endToEnd(ctx, sim, mode, processes, e2eMessages, ceiling))
        if (!run) continue
        rows.push(...run.rows)
        workerPeakMb = Math.max(workerPeakMb, run.peakRssMb.worker)
        apiPeakMb = Math.max(apiPeakMb, run.peakRssMb.api)
      }
    }
  } finally {
    await stop(sim.child)
  }
  if (workerPeakMb > 0) {
    rows.push({
      scenario: 'RSS of a worker process under end-to-end load (peak)',
      figure: workerPeakMb,
      unit: 'MB',
      checks: [],
      notes: `API peak in the same runs: ${Math.round(apiPeakMb)} MB`,
    })
  }
}

const baselineRefs = (): string[] =>
  (env.BENCH_BASELINE ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

/**
 * Beyond one Redis (docs/operations.md#redis-deployments): the same batch load on one Redis and on the
 * 3-master cluster with QUEUE_PARTITIONS 3 and 6. Each cluster row compares every master's Redis CPU
 * per message with the one Redis's: the work spreads when each master carries about a third.
 */
async function clusterRuns(): Promise<void> {
  const total = Number(env.BENCH_CLUSTER_MESSAGES ?? 10_000)
  const sim = await scenario('simulator (cluster runs)', () => startSimulator(ctx.settings, SIM_LATENCY_MS))
  if (!sim) return
  try {
    const single = await scenario('e2e, one Redis', () => spreadRun(ctx, sim, 1, false, 2, total))
    if (single) rows.push(...single.rows)
    // The same run of each earlier build (BENCH_BASELINE): what shards cost on one Redis.
    for (const ref of baselineRefs()) {
      const before = await scenario(`e2e, one Redis, build ${ref}`, () =>
        atBuild(ref, (cwd, commit) =>
          spreadRun(ctx, sim, 1, false, 2, total, { label: `build ${commit}`, cwd, unsharded: !existsSync(join(cwd, 'src/shards.ts')) }),
        ),
      )
      if (single && before)
        rows.push({
          ...single.rows[0]!,
          scenario: `${single.rows[0]!.scenario}: this build vs ${ref}`,
          ceiling: { name: `${before.rows[0]!.scenario.split(', ')[1] ?? ref}, same run`, value: before.rows[0]!.figure },
          target: { text: '≥ 95% of the earlier build', met: single.rows[0]!.figure >= 0.95 * before.rows[0]!.figure },
          checks: [...single.rows[0]!.checks, ...before.rows[0]!.checks],
          notes: `this build: ${single.rows[0]!.notes}; earlier build: ${before.rows[0]!.notes}`,
        })
    }
    for (const partitions of [3, 6]) {
      const run: Spread | undefined = await scenario(`e2e, cluster, QUEUE_PARTITIONS=${partitions}`, () => spreadRun(ctx, sim, partitions, true, 2, total))
      if (!run) continue
      const reference = single?.redisMs[0]
      rows.push(
        ...run.rows.map((row) => ({
          ...row,
          ...(single ? { ceiling: { name: 'the same load on one Redis', value: single.rows[0]!.figure } } : {}),
          ...(reference
            ? {
                target: { text: 'each master ≤ ½ of one Redis’s CPU per message', met: run.redisMs.every((ms) => ms <= reference / 2) },
                notes: `${row.notes}; of one Redis’s ${reference.toFixed(3)} ms: ${run.redisMs.map((ms) => `${Math.round((ms / reference) * 100)}%`).join(', ')}`,
              }
            : {}),
        })),
      )
    }
  } finally {
    await stop(sim.child)
  }
}

/**
 * What tracing costs (docs/tracing.md#cost): one end-to-end run (single POSTs, one worker process)
 * with tracing off, then the same with every span sampled and exported over OTLP/HTTP (protobuf) to a
 * local receiver of its own process. Each "on" row is measured against its "off" row.
 */
async function tracingRuns(): Promise<void> {
  const sim = await scenario('simulator (tracing runs)', () => startSimulator(ctx.settings, SIM_LATENCY_MS))
  const sink = sim && (await scenario('OTLP receiver', () => startOtlpSink(ctx.settings)))
  try {
    if (!sim || !sink) return
    const ceiling = SEND_CONCURRENCY / (SIM_LATENCY_MS / 1000)
    const run = (label: string, tracing: Record<string, string> = {}) =>
      scenario(`e2e single × 1 worker, ${label}`, () => endToEnd(ctx, sim, 'single', 1, tracingMessages, ceiling, { label, env: tracing }))
    const off = await run('tracing off')
    const before = await sinkStats(sink)
    const on = await run('tracing on', {
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
      OTEL_TRACES_SAMPLER: 'always_on',
      // Room for every span of the run: the default queue (2,048) would drop most of them at this rate.
      OTEL_BSP_MAX_QUEUE_SIZE: '200000',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4096',
      OTEL_BSP_SCHEDULE_DELAY: '1000',
    })
    const after = await sinkStats(sink)
    const messages = tracingMessages + warmUpOf(tracingMessages)
    const exported = `exported ${((after.bytes - before.bytes) / messages / 1024).toFixed(1)} KiB of OTLP per message in ${after.requests - before.requests} requests`
    if (off) rows.push(...off.rows)
    if (on) {
      rows.push(
        ...on.rows.map((row, i) => ({
          ...row,
          ceiling: off?.rows[i] ? { name: 'the same run, tracing off', value: off.rows[i].figure } : row.ceiling,
          notes: `${row.notes ?? ''}; every span sampled; ${exported}`,
        })),
      )
    }
  } finally {
    if (sink) await stop(sink.child)
    if (sim) await stop(sim.child)
  }
}

process.once('exit', killAllNow)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping`)
    killAllNow()
    void cleanupRun(redis, ctx.runId).finally(() => process.exit(130))
  })
}

let fatal: Error | undefined
try {
  await main()
} catch (error) {
  fatal = error as Error
  progress(`stopped: ${fatal.message}`)
} finally {
  await stopAll()
  await cleanupRun(redis, ctx.runId)
  redis.disconnect()
}

const seconds = elapsedSeconds()
const contention = {
  meanCores: otherLoad.reduce((a, b) => a + b, 0) / Math.max(1, otherLoad.length),
  maxCores: Math.max(0, ...otherLoad),
}
const failed = rows.some((row) => row.checks.some((c) => !c.ok)) || fatal !== undefined
const file = writeResults(resultsDir, rows, {
  runId: ctx.runId,
  startedAt: new Date(Date.now() - seconds * 1000).toISOString(),
  seconds,
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadAverageAtEnd: loadavg() },
  settings: {
    httpSeconds: ctx.seconds,
    connections: ctx.connections,
    e2eMessages,
    e2eReduced: e2eReduced || undefined,
    budgetSeconds,
    logLevel: ctx.settings.logLevel,
    simLatencyMs: SIM_LATENCY_MS,
  },
  otherProcessesCores: contention,
  error: fatal?.message,
})
console.log(markdownTable(rows))
console.log(
  `\n${e2eMessages.toLocaleString('en-US')} messages per end-to-end run${e2eReduced}; ` +
    `HTTP loads ${ctx.seconds} s at ${ctx.connections} connections after a warm-up; LOG_LEVEL=${ctx.settings.logLevel}; ` +
    `${cpus().length} cores; whole run ${seconds.toFixed(0)} s.` +
    (contention.meanCores >= 0.1
      ? `\n**Other processes on this machine used ${(contention.meanCores * 100).toFixed(0)}% of a core on average (up to ${(contention.maxCores * 100).toFixed(0)}%) while figures were measured: throughputs are lower than on an idle machine.**`
      : ''),
)
progress(`results: ${file}${failed ? ' — SOME CHECKS FAILED' : ''}`)
process.exitCode = failed ? 1 : 0
