import { Queue } from 'bullmq'
import { Cluster, Redis } from 'ioredis'
import { partitionPrefix } from '../../src/queues.js'
import { batchBody, bearer, fire } from '../load.js'
import { stop, until, type Child } from '../processes.js'
import { redisCpuSeconds, scanKeys, statusCounts } from '../redis.js'
import { equal, progress, type Row } from '../report.js'
import { pendingJobs, simStats, startApi, startWorkerProcesses, type Http } from '../service.js'
import { BATCH, noFailures, prefixOf, startMeter, type Ctx } from './common.js'
import { SEND_CONCURRENCY, warmUpOf } from './end-to-end.js'

/** The Redis Cluster of `.ci/redis-topologies.sh start`: its masters, each with one replica. */
export const CLUSTER_MASTERS = (process.env.BENCH_CLUSTER_MASTERS ?? '7000,7001,7002').split(',').map(Number)

/** Where one run's Redis work goes: the connection the queues are read through, and every master. */
interface Target {
  label: string
  env: Record<string, string>
  connection: Redis | Cluster
  masters: Redis[]
}

/**
 * An earlier build to run instead of this one (bench/scenarios/baseline.ts checks it out): its
 * directory, and whether it predates shards (its queues and records have no shard tag).
 */
export interface Build {
  label: string
  cwd: string
  unsharded: boolean
}

export interface Spread {
  rows: Row[]
  /** Redis CPU per delivered message, per master (ms). */
  redisMs: number[]
}

/**
 * Batches of 100 through the API to `processes` worker processes (send,dlr), the simulator reporting
 * DELIVERED for each, on a single Redis or on the cluster with QUEUE_PARTITIONS = `partitions`:
 * messages per second until all DELIVERED, and the Redis CPU each master spent per message. The
 * single Redis's run gives the figure the cluster's masters are compared with.
 */
export async function spreadRun(ctx: Ctx, sim: Http, partitions: number, cluster: boolean, processes: number, total: number, build?: Build): Promise<Spread> {
  const name = `e2e-${cluster ? 'cluster' : 'single'}-p${partitions}${build ? '-baseline' : ''}`
  const prefix = prefixOf(ctx, name)
  const target = await targetOf(ctx, cluster, partitions)
  if (build) target.label = `${target.label}, ${build.label}`
  const settings = { ...ctx.settings, cwd: build?.cwd }
  const queuePrefix = (p: number) => (build?.unsharded ? prefix : partitionPrefix({ KEY_PREFIX: prefix }, p))
  const api = await startApi(settings, `api-${name}`, prefix, target.env)
  const queues = (kind: string) => Array.from({ length: partitions }, (_, p) => new Queue(kind, { connection: target.connection, prefix: queuePrefix(p) }))
  const send = queues('send')
  const dlr = queues('dlr')
  const pending = async (list: Queue[]) => (await Promise.all(list.map(pendingJobs))).reduce((a, b) => a + b, 0)
  let workers: Child[] = []
  try {
    workers = await startWorkerProcesses(
      settings,
      target.connection,
      `worker-${name}`,
      prefix,
      processes,
      'send,dlr',
      { ...target.env, INFOBIP_BASE_URL: sim.url, PUBLIC_BASE_URL: api.url, SEND_CONCURRENCY: String(SEND_CONCURRENCY) },
      queuePrefix(0),
    )
    const post = (messages: number) =>
      fire({
        url: `${api.url}/messages/batch`,
        body: batchBody(BATCH),
        headers: bearer,
        connections: Math.min(ctx.connections, messages / BATCH),
        amount: messages / BATCH,
      })
    const delivered = async (since: number, messages: number) =>
      until(async () => (await simStats(sim)).reportsPosted - since >= messages && (await pending(dlr)) === 0, 'every message to be DELIVERED', 180_000, 20)

    const warmMessages = warmUpOf(total)
    const first = await simStats(sim)
    const warm = await post(warmMessages)
    await delivered(first.reportsPosted, warmMessages)

    const before = await simStats(sim)
    const cpu0 = await Promise.all(target.masters.map(redisCpuSeconds))
    const meter = await startMeter(ctx, [api.child, ...workers])
    const t0 = performance.now()
    const load = await post(total)
    await until(async () => (await pending(send)) === 0, 'every message to be PENDING', 180_000, 10)
    await delivered(before.reportsPosted, total)
    const seconds = (performance.now() - t0) / 1000
    const cpu1 = await Promise.all(target.masters.map(redisCpuSeconds))
    const redisMs = cpu1.map((c, i) => ((c - cpu0[i]!) / total) * 1000)
    const { use } = await meter()
    const msOf = (children: Child[]) => ((children.reduce((sum, c) => sum + (use.byChild[c.name] ?? 0), 0) / total) * 1000).toFixed(3)
    const processCpu = `CPU per message: API ${msOf([api.child])} ms, workers ${msOf(workers)} ms`

    const after = await simStats(sim)
    const all = warmMessages + total
    let records = 0
    let deliveredRecords = 0
    for (const master of target.masters) {
      const keys = (await scanKeys(master, prefix, build?.unsharded ? 'msg:*' : '{*}:msg:*')).filter((key) => !key.endsWith(':infobip'))
      records += keys.length
      deliveredRecords += (await statusCounts(master, keys)).DELIVERED ?? 0
    }
    const perMaster = redisMs.map((ms, i) => `${target.masters.length > 1 ? `:${CLUSTER_MASTERS[i]} ` : ''}${ms.toFixed(3)} ms`).join(', ')
    progress(`  ${target.label}: ${Math.round(total / seconds)} msg/s; Redis CPU per message ${perMaster}`)
    return {
      redisMs,
      rows: [
        {
          scenario: `e2e on ${target.label}, batches of ${BATCH}, ${processes} worker processes: until all DELIVERED`,
          figure: total / seconds,
          unit: 'msg/s',
          checks: [
            noFailures('API', load),
            noFailures('API (warm-up)', warm),
            equal('records', records, all),
            equal('records DELIVERED', deliveredRecords, all),
            equal('accepted by the simulator (none submitted twice)', after.accepted - first.accepted, all),
          ],
          notes: `${total.toLocaleString('en-US')} messages after a warm-up of ${warmMessages.toLocaleString('en-US')}; ${processCpu}; Redis CPU per message${target.masters.length > 1 ? ' on each master' : ''}: ${perMaster}`,
        },
      ],
    }
  } finally {
    await Promise.all(workers.map((w) => stop(w)))
    await Promise.all([...send, ...dlr].map((q) => q.close()))
    await stop(api.child)
    for (const master of target.masters) await cleanupNode(master, prefix)
    if (cluster) {
      target.connection.disconnect()
      for (const master of target.masters) master.disconnect()
    }
  }
}

async function targetOf(ctx: Ctx, cluster: boolean, partitions: number): Promise<Target> {
  if (!cluster) return { label: 'one Redis', env: { QUEUE_PARTITIONS: String(partitions) }, connection: ctx.redis, masters: [ctx.redis] }
  const nodes = CLUSTER_MASTERS.map((port) => `127.0.0.1:${port}`).join(',')
  const masters = CLUSTER_MASTERS.map((port) => new Redis({ port, maxRetriesPerRequest: null }))
  const info = await masters[0]!.cluster('INFO').catch(() => '')
  if (!String(info).includes('cluster_state:ok')) {
    for (const m of masters) m.disconnect()
    throw new Error(`no Redis Cluster on ${nodes}: start one with .ci/redis-topologies.sh start`)
  }
  return {
    label: `the ${masters.length}-master cluster, QUEUE_PARTITIONS=${partitions}`,
    env: { REDIS_CLUSTER_NODES: nodes, QUEUE_PARTITIONS: String(partitions) },
    connection: new Cluster(
      CLUSTER_MASTERS.map((port) => ({ host: '127.0.0.1', port })),
      { redisOptions: { maxRetriesPerRequest: null } },
    ),
    masters,
  }
}

/** A cluster node takes keys of one slot per command: the prefix's keys on it, one UNLINK each. */
async function cleanupNode(node: Redis, prefix: string): Promise<void> {
  const keys = await scanKeys(node, prefix)
  for (let i = 0; i < keys.length; i += 1000)
    await keys
      .slice(i, i + 1000)
      .reduce((p, key) => p.unlink(key), node.pipeline())
      .exec()
}
