import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { partitionPrefix, type SendJob } from '../../src/queues.js'
import { MessageStore } from '../../src/store/message-store.js'
import { batchBody, bearer, DLR_TOKEN, dlrBody, messageBody } from '../load.js'
import { rss, stop } from '../processes.js'
import { cleanup, recordKeys } from '../redis.js'
import { equal, type Check, type Row } from '../report.js'
import { pendingJobs, startApi } from '../service.js'
import type { BareCeilings } from './ceilings.js'
import { BATCH, cpuPer, noFailures, prefixOf, TTL_DAYS, WARM, warmThenFire, type Ctx } from './common.js'

/** The API alone (src/server.ts in its own process), each route at `connections` connections. */

export interface ApiRun {
  rows: Row[]
  peakRssMb: number
}

/** `POST /messages`, one message per request. */
export async function postMessages(ctx: Ctx, bare: BareCeilings): Promise<ApiRun> {
  const prefix = prefixOf(ctx, 'post-single')
  const api = await startApi(ctx.settings, 'api', prefix)
  try {
    const { run, cpu, acknowledged: accepted } = await warmThenFire(ctx, [api.child], `${api.url}/messages`, JSON.stringify(messageBody()), WARM.single, bearer)
    const peakRssMb = rss(api.child).peakMb
    const ratio = run.perSecond / bare.single.perSecond
    return {
      peakRssMb,
      rows: [
        {
          scenario: `POST /messages (single, ${ctx.connections} conn.)`,
          figure: run.perSecond,
          unit: 'req/s',
          p50Ms: run.p50Ms,
          p99Ms: run.p99Ms,
          ceiling: { name: 'bare Fastify', value: bare.single.perSecond },
          target: { text: '≥ 5,000 req/s, p99 ≤ 50 ms, ≥ 40% of bare', met: run.perSecond >= 5000 && run.p99Ms <= 50 && ratio >= 0.4 },
          checks: [noFailures('API', run), ...(await storedAndQueued(ctx.redis, prefix, accepted))],
          notes: `${cpu.text}; ${cpuPer(cpu, api.child, run.ok, 'request')}`,
        },
        {
          scenario: 'RSS of the API under POST /messages load (peak)',
          figure: peakRssMb,
          unit: 'MB',
          ceiling: { name: 'bare Fastify under load', value: bare.peakRssMb },
          checks: [],
        },
      ],
    }
  } finally {
    await stop(api.child)
    await cleanup(ctx.redis, prefix)
  }
}

/** `POST /messages/batch` with 100 messages per request. */
export async function postBatch(ctx: Ctx, bare: BareCeilings): Promise<Row> {
  const prefix = prefixOf(ctx, 'post-batch')
  const api = await startApi(ctx.settings, 'api', prefix)
  try {
    const { run, cpu, acknowledged: requests } = await warmThenFire(ctx, [api.child], `${api.url}/messages/batch`, batchBody(BATCH), WARM.batch, bearer)
    return {
      scenario: `POST /messages/batch (${BATCH} per request, ${ctx.connections} conn.)`,
      figure: run.perSecond * BATCH,
      unit: 'msg/s',
      p50Ms: run.p50Ms,
      p99Ms: run.p99Ms,
      ceiling: { name: 'bare Fastify, same body', value: bare.batch.perSecond * BATCH },
      target: { text: '≥ 40,000 msg/s', met: run.perSecond * BATCH >= 40_000 },
      checks: [noFailures('API', run), ...(await storedAndQueued(ctx.redis, prefix, requests * BATCH))],
      notes: `${cpu.text}; ${cpuPer(cpu, api.child, run.ok * BATCH, 'message')}`,
    }
  } finally {
    await stop(api.child)
    await cleanup(ctx.redis, prefix)
  }
}

/** Every 2xx left a record, and every record is in exactly one waiting send job; nothing stays in the outbox. */
async function storedAndQueued(redis: Redis, prefix: string, messages: number): Promise<Check[]> {
  const queue = new Queue<SendJob>('send', { connection: redis, prefix: partitionPrefix({ KEY_PREFIX: prefix }, 0) })
  try {
    const store = new MessageStore(redis, { prefix, ttlDays: TTL_DAYS })
    const records = (await recordKeys(redis, prefix)).map((key) => key.slice(key.lastIndexOf(':') + 1))
    const queued = (await queue.getJobs(['waiting'])).flatMap((job) => job.data.ids)
    const inJobs = new Set(queued)
    return [
      equal('records = messages acknowledged', records.length, messages),
      equal('messages in send jobs = records', queued.length, records.length),
      equal('records without a send job', records.filter((id) => !inJobs.has(id)).length, 0),
      equal('outbox empty', await redis.zcard(store.keys.outbox(0)), 0),
    ]
  } finally {
    await queue.close()
  }
}

/** `POST /infobip-dlr` with 100 reports per POST: each POST stored as one dlr job, then acknowledged. */
export async function postDlr(ctx: Ctx, bare: BareCeilings): Promise<Row> {
  const prefix = prefixOf(ctx, 'post-dlr')
  const api = await startApi(ctx.settings, 'api', prefix)
  const queue = new Queue('dlr', { connection: ctx.redis, prefix: partitionPrefix({ KEY_PREFIX: prefix }, 0) })
  try {
    const { run, cpu, acknowledged: posts } = await warmThenFire(ctx, [api.child], `${api.url}/infobip-dlr?token=${DLR_TOKEN}`, dlrBody(BATCH), WARM.dlr)
    return {
      scenario: `POST /infobip-dlr (${BATCH} reports per POST, ${ctx.connections} conn.)`,
      figure: run.perSecond * BATCH,
      unit: 'reports/s',
      p50Ms: run.p50Ms,
      p99Ms: run.p99Ms,
      ceiling: { name: 'bare Fastify, same body', value: bare.dlr.perSecond * BATCH },
      target: { text: '≥ 100,000 reports/s', met: run.perSecond * BATCH >= 100_000 },
      checks: [noFailures('API', run), equal('dlr jobs = POSTs acknowledged', await pendingJobs(queue), posts)],
      notes: `${cpu.text}; ${cpuPer(cpu, api.child, run.ok, 'POST')}`,
    }
  } finally {
    await queue.close()
    await stop(api.child)
    await cleanup(ctx.redis, prefix)
  }
}
