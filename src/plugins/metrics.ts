import { everyPartition, type QueuePartition } from '../queues.js'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { QUEUE_STATES, readSharedMetrics, SHARED_COUNTERS, SHARED_HISTOGRAMS, SharedMetrics, type Labels, type Series } from '../metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's share of the counters every process adds to (src/metrics.ts). */
    metrics: SharedMetrics
  }
}

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * `GET /metrics` (docs/operations.md#metrics) from a registry of this app's own, so that several apps can live in one
 * process (tests). Process metrics and `http_request_duration_seconds` are this process's; the
 * `sms_*` counters and the submit-to-final histogram are read from Redis at scrape time, where every
 * API and worker process adds its increments, so any API process shows the whole service. The
 * queue depths are read from BullMQ at scrape time too.
 *
 * The route has no authentication, like most exporters: expose it only to the monitoring network
 * (a firewall or an ingress rule that does not route `/metrics` from outside).
 */
export default fp(
  async function metricsPlugin(app) {
    const { config } = app
    const metrics = new SharedMetrics(app.redis, config.KEY_PREFIX, app.log)
    const queues = everyPartition(app.queues)
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })

    const httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'API request duration in seconds, by method, route pattern and status code (this process)',
      labelNames: ['method', 'route', 'status_code'],
      buckets: HTTP_BUCKETS,
      registers: [registry],
    })
    app.addHook('onResponse', async (request, reply) => {
      // The route pattern, never the URL: ids and query strings would make a series per request.
      const route = request.routeOptions.url ?? 'unmatched'
      httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
    })

    registerShared(
      registry,
      sharedReader(() => readSharedMetrics(app.redis, config.KEY_PREFIX, app.store.shards)),
      app.tenants.names,
    )
    registerQueueDepths(registry, queues)

    app.decorate('metrics', metrics)
    app.addHook('onClose', async () => {
      await metrics.close()
    })

    app.get(
      '/metrics',
      {
        schema: {
          summary: 'Prometheus metrics',
          description:
            'Prometheus text format. The sms_* counters and histograms cover every API and worker process (shared through Redis); ' +
            'http_request_duration_seconds and process_* are this process only. No authentication: expose it to the monitoring network only.',
          tags: ['operations'],
          response: {
            200: {
              description: 'Prometheus exposition format 0.0.4',
              content: { 'text/plain': { schema: { type: 'string', example: 'sms_messages_created_total 42\n' } } },
            },
          },
        },
      },
      async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()),
    )
  },
  { name: 'metrics', dependencies: ['store', 'auth'] },
)

type Snapshot = Awaited<ReturnType<typeof readSharedMetrics>>

/** One Redis read per scrape, however many metrics ask for it at once. */
function sharedReader(read: () => Promise<Snapshot>): () => Promise<Snapshot> {
  let pending: Promise<Snapshot> | undefined
  return () => (pending ??= read().finally(() => (pending = undefined)))
}

/**
 * The shared counters as real Prometheus counters: each scrape resets them and sets them to the
 * totals in Redis (synchronously after the read, so two scrapes cannot mix). Every known label value
 * is exposed, at 0 until counted, so that rate() has a series from the start.
 */
function registerShared(registry: Registry, read: () => Promise<Snapshot>, tenants: string[]): void {
  for (const [name, spec] of Object.entries(SHARED_COUNTERS)) {
    const labels: Record<string, readonly string[]> = { ...spec.labels }
    if ('tenant' in labels) labels.tenant = tenants
    const labelSets = combinations(labels)
    new Counter({
      name,
      help: spec.help,
      labelNames: Object.keys(spec.labels),
      registers: [registry],
      async collect() {
        const { series } = await read()
        this.reset()
        for (const labels of labelSets) this.inc(labels, 0)
        for (const s of series) if (s.name === name) this.inc(s.labels, s.value)
      },
    })
  }
  for (const [name, spec] of Object.entries(SHARED_HISTOGRAMS)) {
    registry.registerMetric(new SharedHistogram(name, spec.help, spec.buckets, read))
  }
  new Gauge({
    name: 'sms_messages_stale',
    help: 'Messages without a final status long after submission (maintained by the reconciler)',
    registers: [registry],
    async collect() {
      this.set((await read()).stale)
    },
  })
}

function registerQueueDepths(registry: Registry, queues: QueuePartition[]): void {
  new Gauge({
    name: 'sms_queue_jobs',
    help: 'Jobs per queue, partition (QUEUE_PARTITIONS) and state, read from BullMQ at scrape time',
    labelNames: ['queue', 'partition', 'state'],
    registers: [registry],
    async collect() {
      const counts = await Promise.all(queues.map(({ queue }) => queue.getJobCounts(...QUEUE_STATES)))
      this.reset()
      queues.forEach(({ queue, partition }, i) => {
        for (const state of QUEUE_STATES) this.set({ queue: queue.name, partition: String(partition), state }, counts[i]![state] ?? 0)
      })
    },
  })
}

type HistogramValues = Awaited<ReturnType<Histogram['get']>>

/**
 * A histogram whose buckets, sum and count are the cumulative values in Redis. prom-client cannot set
 * a histogram's state, so the values are built here in the shape its own `get()` returns.
 */
class SharedHistogram extends Histogram {
  readonly #name: string
  readonly #help: string
  readonly #buckets: readonly number[]
  readonly #read: () => Promise<Snapshot>

  constructor(name: string, help: string, buckets: readonly number[], read: () => Promise<Snapshot>) {
    super({ name, help, buckets: [...buckets], registers: [] })
    this.#name = name
    this.#help = help
    this.#buckets = buckets
    this.#read = read
  }

  override async get(): Promise<HistogramValues> {
    const { series } = await this.#read()
    const value = (suffix: string, labels: Labels) => find(series, `${this.#name}${suffix}`, labels)?.value ?? 0
    // The unlabelled series exists from the start; labelled ones once something was observed.
    const groups = new Map<string, Labels>([['{}', {}]])
    for (const s of series) {
      if (s.name !== `${this.#name}_count`) continue
      groups.set(JSON.stringify(s.labels), s.labels)
    }
    const values = [...groups.values()].flatMap((labels) => [
      ...[...this.#buckets.map(String), '+Inf'].map((le) => ({
        metricName: `${this.#name}_bucket`,
        labels: { ...labels, le },
        value: value('_bucket', { ...labels, le }),
      })),
      { metricName: `${this.#name}_sum`, labels, value: value('_sum', labels) },
      { metricName: `${this.#name}_count`, labels, value: value('_count', labels) },
    ])
    // prom-client's typings declare `type` as a numeric enum; at run time it is the string.
    return { name: this.#name, help: this.#help, type: 'histogram', aggregator: 'sum', values } as unknown as HistogramValues
  }

  /** The registry prefers this internal method of prom-client's Histogram when it exists. */
  getForPromString(): Promise<HistogramValues> {
    return this.get()
  }
}

function find(series: Series[], name: string, labels: Labels): Series | undefined {
  const keys = Object.keys(labels)
  return series.find((s) => s.name === name && Object.keys(s.labels).length === keys.length && keys.every((k) => s.labels[k] === labels[k]))
}

/** `{ outcome: ['a', 'b'] }` → `[{ outcome: 'a' }, { outcome: 'b' }]`; `{}` → `[{}]`. */
function combinations(labels: Record<string, readonly string[]>): Labels[] {
  return Object.entries(labels).reduce<Labels[]>((sets, [key, values]) => sets.flatMap((set) => values.map((v) => ({ ...set, [key]: v }))), [{}])
}
