import { batchBody, dlrBody, messageBody, TEXT, type LoadResult } from '../load.js'
import { rss, stop } from '../processes.js'
import { cleanup, prefixMemory, scanKeys } from '../redis.js'
import { equal, type Row } from '../report.js'
import { startBare } from '../service.js'
import { BATCH, cpuPer, noFailures, prefixOf, startMeter, WARM, warmThenFire, type Ctx } from './common.js'

/** The ceilings every other figure is divided by, measured in the same run on the same machine. */

export interface BareCeilings {
  single: LoadResult
  batch: LoadResult
  dlr: LoadResult
  peakRssMb: number
}

/** A bare Fastify route (bench/bare-server.ts, its own process) with bodies of the sizes the API gets. */
export async function bareFastify(ctx: Ctx): Promise<{ rows: Row[]; ceilings: BareCeilings }> {
  const bare = await startBare(ctx.settings)
  try {
    const measure = async (path: string, body: string, warm: number, perRequest: number, scenario: string, unit: string) => {
      const { run, cpu } = await warmThenFire(ctx, [bare.child], `${bare.url}${path}`, body, warm)
      const row: Row = {
        scenario,
        figure: run.perSecond * perRequest,
        unit,
        p50Ms: run.p50Ms,
        p99Ms: run.p99Ms,
        checks: [noFailures('bare', run)],
        notes: `${cpu.text}; ${cpuPer(cpu, bare.child, run.ok, 'request')}`,
      }
      return { run, row }
    }
    const single = await measure(
      '/echo',
      JSON.stringify(messageBody()),
      WARM.single,
      1,
      `ceiling: bare Fastify POST, one-message body (${ctx.connections} conn.)`,
      'req/s',
    )
    const batch = await measure('/echo', batchBody(BATCH), WARM.batch, BATCH, `ceiling: bare Fastify POST, ${BATCH}-message body`, 'msg/s')
    const dlr = await measure('/ack', dlrBody(), WARM.dlr, BATCH, `ceiling: bare Fastify POST, ${BATCH}-report body`, 'reports/s')
    return {
      ceilings: { single: single.run, batch: batch.run, dlr: dlr.run, peakRssMb: rss(bare.child).peakMb },
      rows: [single.row, batch.row, dlr.row],
    }
  } finally {
    await stop(bare.child)
  }
}

export interface HsetCeiling {
  row: Row
  opsPerSecond: number
  /** Redis memory of one small hash (to, text, status): the floor a message record is compared with. */
  bytesPerHash: number
}

/** `redis-benchmark`-style pipelined writes: HSETs in pipelines of 1,000, four pipelines in flight. */
export async function pipelinedHset(ctx: Ctx, total = 200_000): Promise<HsetCeiling> {
  const prefix = prefixOf(ctx, 'hset')
  const perPipeline = 1000
  const lanes = 4
  try {
    const meter = await startMeter(ctx, [])
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let p = lane; p * perPipeline < total; p += lanes) {
          const pipeline = ctx.redis.pipeline()
          for (let i = p * perPipeline; i < (p + 1) * perPipeline; i++) pipeline.hset(`${prefix}:h:${i}`, 'to', '41793021100', 'text', TEXT, 'status', 'QUEUED')
          await pipeline.exec()
        }
      }),
    )
    const seconds = (performance.now() - t0) / 1000
    const cpu = await meter()
    // MEMORY USAGE rather than INFO: only these keys, whatever other clients do meanwhile.
    const bytesPerHash = (await prefixMemory(ctx.redis, prefix)) / total
    const stored = (await scanKeys(ctx.redis, prefix, 'h:*')).length
    const opsPerSecond = total / seconds
    return {
      opsPerSecond,
      bytesPerHash,
      row: {
        scenario: `ceiling: Redis pipelined HSET (ioredis, ${perPipeline}/pipeline, ${lanes} in flight)`,
        figure: opsPerSecond,
        unit: 'ops/s',
        checks: [equal('hashes stored', stored, total)],
        notes: `${cpu.text}; a bare 3-field hash takes ${Math.round(bytesPerHash)} B`,
      },
    }
  } finally {
    await cleanup(ctx.redis, prefix)
  }
}
