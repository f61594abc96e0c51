import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyReply } from 'fastify'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ConfigError, listOf, type Config } from '../config.js'
import {
  behaviourFor, deliveryReport, errorBody, logEntry, messageCount, STATUSES, supersedes, v2Error, v3Error, worstRefusal,
  type Api, type DeliveryReport, type RefusalCode, type SentMessage, type Shown, type Violation,
} from './outcomes.js'
import { Reporter } from './reporter.js'
import { Timers } from './timers.js'

/**
 * The built-in Infobip simulator (SPEC §8): Infobip's send and logs API, delivery reports pushed to each
 * message's URL, outcomes picked by the destination's last four digits, and knobs for latency, failures
 * and rate limits. `/_sim/*` lets tests see what it received; it is not part of Infobip's API.
 */

export interface SimulatorOptions {
  logger?: boolean | object
}

/** How long a "timeout" failure holds the request when the client does not give up first. */
const HOLD_MS = 60_000
/** Messages remembered for the logs and inspection APIs; the oldest are forgotten first. */
const MAX_MESSAGES = 200_000
const LOGS_PER_MINUTE = 120
const DEFAULT_SENDER = 'InfoSMS'

// ---------------------------------------------------------------------------------------------------
// Schemas (lenient like Infobip: unknown fields are accepted and ignored)

const Destination = Type.Object({
  to: Type.String({ minLength: 1, maxLength: 64 }),
  messageId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
})
const Destinations = Type.Array(Destination, { minItems: 1 })

const V3Body = Type.Object({
  messages: Type.Array(Type.Object({
    sender: Type.Optional(Type.String()),
    destinations: Destinations,
    content: Type.Object({ text: Type.String({ minLength: 1 }) }),
    webhooks: Type.Optional(Type.Object({
      delivery: Type.Optional(Type.Object({ url: Type.Optional(Type.String()), notify: Type.Optional(Type.Boolean()) })),
      callbackData: Type.Optional(Type.String({ maxLength: 4000 })),
    })),
  }), { minItems: 1 }),
  options: Type.Optional(Type.Object({
    schedule: Type.Optional(Type.Object({ bulkId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) })),
  })),
})

const V2Body = Type.Object({
  bulkId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  messages: Type.Array(Type.Object({
    from: Type.Optional(Type.String()),
    destinations: Destinations,
    text: Type.String({ minLength: 1 }),
    notifyUrl: Type.Optional(Type.String()),
    callbackData: Type.Optional(Type.String({ maxLength: 4000 })),
  }), { minItems: 1 }),
})

const LogsQuery = Type.Object({
  messageId: Type.Optional(Type.String()),
  bulkId: Type.Optional(Type.String()),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
})

const StatusSchema = Type.Object({
  groupId: Type.Integer(), groupName: Type.String(), id: Type.Integer(), name: Type.String(), description: Type.String(),
})
const ErrorSchema = Type.Object({
  groupId: Type.Integer(), groupName: Type.String(), id: Type.Integer(), name: Type.String(), description: Type.String(),
  permanent: Type.Boolean(),
})
const Price = Type.Object({ pricePerMessage: Type.Number(), currency: Type.String() })

const V3Error = Type.Object({
  errorCode: Type.String(),
  description: Type.String(),
  action: Type.String(),
  violations: Type.Array(Type.Object({ property: Type.String(), violation: Type.String() })),
  resources: Type.Array(Type.Unknown()),
})
const V2Error = Type.Object({
  requestError: Type.Object({
    serviceException: Type.Object({
      messageId: Type.String(),
      text: Type.String(),
      validationErrors: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()))),
    }),
  }),
})
const errorsOf = <T extends typeof V3Error | typeof V2Error>(shape: T) => ({ 400: shape, 401: shape, 429: shape, 500: shape })

const V3Answer = Type.Object({
  bulkId: Type.String(),
  messages: Type.Array(Type.Object({
    messageId: Type.String(), status: StatusSchema, destination: Type.String(),
    details: Type.Object({ messageCount: Type.Integer() }),
  })),
})
const V2Answer = Type.Object({
  bulkId: Type.String(),
  messages: Type.Array(Type.Object({
    messageId: Type.String(), status: StatusSchema, to: Type.String(), smsCount: Type.Integer(),
  })),
})
const LogsAnswer = Type.Object({
  results: Type.Array(Type.Object({
    sender: Type.String(), destination: Type.String(), bulkId: Type.String(), messageId: Type.String(),
    sentAt: Type.String(), doneAt: Type.Optional(Type.String()), messageCount: Type.Integer(),
    price: Price, status: StatusSchema, error: ErrorSchema,
  })),
  cursor: Type.Object({ limit: Type.Integer() }),
})

const MessageView = Type.Object({
  messageId: Type.String(), to: Type.String(), text: Type.String(), sender: Type.String(),
  submissions: Type.Integer(), accepted: Type.Integer(), reportsPosted: Type.Integer(),
})
const StatsView = Type.Object({
  requests: Type.Integer(), accepted: Type.Integer(), reportsPosted: Type.Integer(),
  reportPostsFailed: Type.Integer(), reportsDropped: Type.Integer(),
})
const NotFound = Type.Object({ statusCode: Type.Literal(404), error: Type.String(), message: Type.String() })

// ---------------------------------------------------------------------------------------------------
// State

/** One destination of a submission, the same for v2 and v3. */
interface Submission {
  /** Where it sits in the request, for violations: `messages[0].destinations[1]`. */
  path: string
  messageId?: string
  to: string
  text: string
  sender: string
  /** Where its reports go; undefined = nowhere. */
  url?: string
  callbackData?: string
}

interface SimMessage extends SentMessage {
  text: string
  submissions: number
  accepted: number
  reportsPosted: number
  /** The latest report, as the logs API shows it. */
  shown?: Shown
}

type SubmitResult =
  | { refused: RefusalCode; offender?: Submission }
  | { accepted: SentMessage[]; hold: boolean }

/** Counts calls over the last `windowMs`; a sliding window so that limits hold at any instant. */
class SlidingWindow {
  private readonly times: number[] = []
  constructor(private readonly limit: number, private readonly windowMs: number) {}

  /** Records a call at `now` and returns 0, or refuses it and returns the ms until one is allowed. */
  take(now: number): number {
    while (this.times.length > 0 && this.times[0]! <= now - this.windowMs) this.times.shift()
    if (this.times.length >= this.limit) return this.times[0]! + this.windowMs - now
    this.times.push(now)
    return 0
  }
}

const maskPhone = (to: string): string => `…${to.slice(-4)}`

class Simulator {
  /** requests: send requests that passed auth and validation; accepted: destinations accepted. */
  readonly stats = { requests: 0, accepted: 0 }
  readonly reporter: Reporter<DeliveryReport>
  readonly logsLimit = new SlidingWindow(LOGS_PER_MINUTE, 60_000)
  private readonly sendLimit: SlidingWindow | undefined
  private readonly messages = new Map<string, SimMessage>()
  /** Refusals already answered per message (by messageId, else by number), for 0004 and 0005. */
  private readonly refusals = new Map<string, number>()
  private readonly timers = new Timers()
  private readonly waits = new Set<() => void>()
  private injectedFailures = 0
  private readonly expectedAuth: Buffer

  constructor(private readonly config: Config, apiKey: string, private readonly log: FastifyBaseLogger) {
    this.expectedAuth = sha256(`App ${apiKey}`)
    this.sendLimit = config.SIM_RATE_LIMIT_PER_SECOND > 0 ? new SlidingWindow(config.SIM_RATE_LIMIT_PER_SECOND, 1000) : undefined
    this.reporter = new Reporter<DeliveryReport>({ log, onPosted: (reports) => this.countPosted(reports) })
  }

  /** Constant-time: hashing first makes both sides the same length whatever was sent. */
  authorized(header: string | undefined): boolean {
    return timingSafeEqual(sha256(header ?? ''), this.expectedAuth)
  }

  /**
   * Decides a send request as a whole: one refused destination refuses the request (real Infobip rejects a
   * bad request whole). Accepted messages are recorded here, before any latency, so a client that dies
   * while waiting for the answer has nevertheless been accepted.
   */
  submit(api: Api, bulkId: string, subs: Submission[]): SubmitResult {
    this.stats.requests++
    for (const s of subs) this.countSubmission(api, bulkId, s)
    if (this.sendLimit && this.sendLimit.take(Date.now()) > 0) return { refused: 429 }
    // Every destination's refusal counts as answered, even when another one's code is the one sent.
    const refusals = subs.map((s) => this.refusalFor(s))
    const refused = worstRefusal(refusals.filter((code) => code !== undefined))
    if (refused) return { refused, offender: subs[refusals.indexOf(refused)] }
    const failure = this.injectedFailure()
    if (failure === 'error') return { refused: 500 }
    const accepted = subs.map((s) => this.accept(api, bulkId, s))
    this.log.debug({ bulkId, messages: accepted.length, hold: failure === 'timeout' }, 'accepted')
    return { accepted, hold: failure === 'timeout' }
  }

  lookup(query: { messageId?: string; bulkId?: string; limit: number }) {
    const ids = [...new Set(listOf(query.messageId))]
    const bulkIds = new Set(listOf(query.bulkId))
    const candidates = ids.length > 0
      ? ids.map((id) => this.messages.get(id)).filter((m) => m !== undefined)
      : [...this.messages.values()].reverse() // newest first, like Infobip
    return candidates
      .filter((m) => m.accepted > 0 && (bulkIds.size === 0 || bulkIds.has(m.bulkId)))
      .slice(0, query.limit)
      .map((m) => logEntry(m, m.shown))
  }

  view(messageId: string) {
    const m = this.messages.get(messageId)
    if (!m) return undefined
    const { to, text, sender, submissions, accepted, reportsPosted } = m
    return { messageId, to, text, sender, submissions, accepted, reportsPosted }
  }

  statsView() {
    const { posted, failedPosts, dropped } = this.reporter.counts
    return { ...this.stats, reportsPosted: posted, reportPostsFailed: failedPosts, reportsDropped: dropped }
  }

  /** Resolves after `ms`, when `cancel` is called, or when the app starts closing — whichever is first. */
  wait(ms: number): { done: Promise<void>; cancel: () => void } {
    let cancel = () => {}
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => cancel(), ms)
      cancel = () => {
        clearTimeout(timer)
        this.waits.delete(cancel)
        resolve()
      }
      this.waits.add(cancel)
    })
    return { done, cancel }
  }

  /** The "timeout" failure: never answer; drop the connection when the client leaves or after HOLD_MS. */
  async hold(reply: FastifyReply): Promise<void> {
    reply.hijack()
    const { done, cancel } = this.wait(HOLD_MS)
    reply.raw.once('close', cancel)
    if (reply.raw.closed) cancel() // the client left before we started listening
    await done
    reply.raw.destroy()
  }

  /** preClose: answer the requests that wait (latency, holds) so the server can close at once. */
  releaseWaits(): void {
    for (const cancel of [...this.waits]) cancel()
  }

  /** onClose: no report timer or retry survives the app. */
  async close(): Promise<void> {
    this.timers.clear()
    await this.reporter.close()
  }

  private countSubmission(api: Api, bulkId: string, s: Submission): void {
    if (s.messageId === undefined) return // nothing to look it up by until it is accepted
    const known = this.messages.get(s.messageId)
    if (known) known.submissions++
    else this.remember({ ...this.sent(api, bulkId, s.messageId, s), text: s.text, submissions: 1, accepted: 0, reportsPosted: 0 })
  }

  private refusalFor(s: Submission): RefusalCode | undefined {
    const refuse = behaviourFor(s.to).refuse
    if (!refuse) return undefined
    const key = s.messageId ?? `to:${s.to}`
    const answered = this.refusals.get(key) ?? 0
    if (answered >= refuse.times) return undefined
    this.refusals.set(key, answered + 1)
    this.log.info({ messageId: s.messageId, to: maskPhone(s.to), code: refuse.code }, 'refusing by destination')
    return refuse.code
  }

  /** SIM_FAILURE_RATE: failures alternate between a 500 and a timeout, so exactly half are each. */
  private injectedFailure(): 'error' | 'timeout' | undefined {
    if (Math.random() >= this.config.SIM_FAILURE_RATE) return undefined
    this.injectedFailures++
    return this.injectedFailures % 2 === 1 ? 'error' : 'timeout'
  }

  private accept(api: Api, bulkId: string, s: Submission): SentMessage {
    const sent = this.sent(api, bulkId, s.messageId ?? randomUUID(), s)
    const known = this.messages.get(sent.messageId)
    const record: SimMessage = known
      ? Object.assign(known, sent, { text: s.text, shown: undefined })
      : this.remember({ ...sent, text: s.text, submissions: 1, accepted: 0, reportsPosted: 0 })
    record.accepted++
    this.stats.accepted++
    this.scheduleReports(record, sent, s.url)
    return sent
  }

  private sent(api: Api, bulkId: string, messageId: string, s: Submission): SentMessage {
    return {
      api, bulkId, messageId, to: s.to, sender: s.sender, callbackData: s.callbackData,
      messageCount: messageCount(s.text), sentAt: Date.now(),
    }
  }

  /**
   * Step i of the message's behaviour is due (i + 1) × SIM_DLR_DELAY_MS after acceptance. Its `doneAt`
   * gets i extra ms, so different reports of a message never share one even when the delay is 0.
   */
  private scheduleReports(record: SimMessage, sent: SentMessage, url: string | undefined): void {
    behaviourFor(sent.to).reports.forEach((step, i) => {
      const due = this.config.SIM_DLR_DELAY_MS * (i + 1)
      const doneAt = sent.sentAt + due + i
      const report = deliveryReport(sent, step, doneAt) // built once: repeated POSTs are byte-identical
      this.timers.later(due, () => {
        if (supersedes(step.status, record.shown?.status)) record.shown = { status: step.status, error: step.error, doneAt }
        if (url) for (let k = 0; k < step.posts; k++) this.reporter.enqueue(url, report)
      })
    })
  }

  private countPosted(reports: readonly DeliveryReport[]): void {
    for (const r of reports) {
      const m = this.messages.get(r.messageId)
      if (m) m.reportsPosted++
    }
  }

  private remember(m: SimMessage): SimMessage {
    this.messages.set(m.messageId, m)
    if (this.messages.size > MAX_MESSAGES) this.messages.delete(this.messages.keys().next().value!)
    return m
  }
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest()

// ---------------------------------------------------------------------------------------------------
// Routes

interface ApiScopeOptions {
  sim: Simulator
  api: Api
  latencyMs: number
}

/** What every Infobip route shares: auth, latency, and errors in that API version's shape. */
const infobipScope: FastifyPluginAsyncTypebox<ApiScopeOptions> = async (scope, { sim, api, latencyMs }) => {
  scope.addHook('onRequest', async (request, reply) => {
    if (sim.authorized(request.headers.authorization)) return
    return reply.code(401).send(errorBody(api, 401))
  })
  // onSend runs after the handler has recorded what it accepted: latency never hides an acceptance.
  if (latencyMs > 0) scope.addHook('onSend', async () => { await sim.wait(latencyMs).done })
  scope.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.validation || (err.statusCode !== undefined && err.statusCode < 500)) {
      return reply.code(400).send(errorBody(api, 400, undefined, violationsOf(err)))
    }
    request.log.error({ err }, 'simulator error')
    return reply.code(500).send(errorBody(api, 500))
  })
  if (api === 'v3') await scope.register(v3Routes, { sim })
  else await scope.register(v2Routes, { sim })
}

/** Ajv's `/messages/0/destinations` + missing `to` → Infobip's `messages[0].destinations.to`. */
function violationsOf(err: FastifyError): Violation[] {
  if (!err.validation) return [{ property: 'body', violation: err.message }]
  return err.validation.map((v) => {
    const path = v.instancePath.replace(/^\//, '').replace(/\/(\d+)/g, '[$1]').replaceAll('/', '.')
    const missing = typeof v.params['missingProperty'] === 'string' ? v.params['missingProperty'] : undefined
    return { property: [path, missing].filter(Boolean).join('.') || 'body', violation: v.message ?? 'is invalid' }
  })
}

type ErrorBuilder<B> = (code: RefusalCode, description?: string, violations?: Violation[]) => B

/** The body for a refused request: a 400 names the destination that caused it. */
/** A refused submission gets its error in the API's own shape; a held one (a "timeout") no answer. */
async function refuseOrHold<B>(sim: Simulator, reply: FastifyReply, result: ReturnType<Simulator['submit']>, build: ErrorBuilder<B>) {
  if ('refused' in result) {
    if (result.refused === 429) reply.header('retry-after', '1')
    return reply.code(result.refused).send(refusal(build, result.refused, result.offender))
  }
  await sim.hold(reply)
  return reply
}

function refusal<B>(build: ErrorBuilder<B>, code: RefusalCode, offender: Submission | undefined): B {
  if (code !== 400 || !offender) return build(code)
  const description = `Invalid destination address: ${maskPhone(offender.to)} cannot receive messages.`
  return build(400, description, [{ property: `${offender.path}.to`, violation: 'invalid destination address' }])
}

const v3Routes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const schema = { body: V3Body, response: { 200: V3Answer, ...errorsOf(V3Error) } }
  scope.post('/sms/3/messages', { schema }, async (request, reply) => {
    const bulkId = request.body.options?.schedule?.bulkId ?? randomUUID()
    const subs = request.body.messages.flatMap((m, i) => m.destinations.map((d, j): Submission => ({
      path: `messages[${i}].destinations[${j}]`,
      messageId: d.messageId,
      to: d.to,
      text: m.content.text,
      sender: m.sender ?? DEFAULT_SENDER,
      url: m.webhooks?.delivery?.notify === false ? undefined : m.webhooks?.delivery?.url,
      callbackData: m.webhooks?.callbackData,
    })))
    const result = sim.submit('v3', bulkId, subs)
    if ('refused' in result || result.hold) return refuseOrHold(sim, reply, result, v3Error)
    return {
      bulkId,
      messages: result.accepted.map((m) => ({
        messageId: m.messageId, status: STATUSES.PENDING_ACCEPTED, destination: m.to, details: { messageCount: m.messageCount },
      })),
    }
  })

  const logsSchema = { querystring: LogsQuery, response: { 200: LogsAnswer, ...errorsOf(V3Error) } }
  scope.get('/sms/3/logs', { schema: logsSchema }, async (request, reply) => {
    const waitMs = sim.logsLimit.take(Date.now())
    if (waitMs > 0) return reply.code(429).header('retry-after', String(Math.ceil(waitMs / 1000))).send(v3Error(429))
    return { results: sim.lookup(request.query), cursor: { limit: request.query.limit } }
  })
}

const v2Routes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const schema = { body: V2Body, response: { 200: V2Answer, ...errorsOf(V2Error) } }
  scope.post('/sms/2/text/advanced', { schema }, async (request, reply) => {
    const bulkId = request.body.bulkId ?? randomUUID()
    const subs = request.body.messages.flatMap((m, i) => m.destinations.map((d, j): Submission => ({
      path: `messages[${i}].destinations[${j}]`,
      messageId: d.messageId,
      to: d.to,
      text: m.text,
      sender: m.from ?? DEFAULT_SENDER,
      url: m.notifyUrl,
      callbackData: m.callbackData,
    })))
    const result = sim.submit('v2', bulkId, subs)
    if ('refused' in result || result.hold) return refuseOrHold(sim, reply, result, v2Error)
    return {
      bulkId,
      messages: result.accepted.map((m) => ({
        messageId: m.messageId, status: STATUSES.PENDING_ACCEPTED, to: m.to, smsCount: m.messageCount,
      })),
    }
  })
}

/** Test inspection, no auth: what the simulator received and posted. */
const inspectionRoutes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const params = Type.Object({ messageId: Type.String() })
  scope.get('/_sim/messages/:messageId', { schema: { params, response: { 200: MessageView, 404: NotFound } } }, async (request, reply) => {
    const view = sim.view(request.params.messageId)
    if (!view) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'unknown messageId' })
    return view
  })
  scope.get('/_sim/stats', { schema: { response: { 200: StatsView } } }, async () => sim.statsView())
}

export function buildSimulator(config: Config, opts: SimulatorOptions = {}) {
  if (!config.INFOBIP_API_KEY) throw new ConfigError('Invalid configuration: INFOBIP_API_KEY is required (see .env.example)')
  const app = Fastify({ logger: opts.logger ?? false }).withTypeProvider<TypeBoxTypeProvider>()
  const sim = new Simulator(config, config.INFOBIP_API_KEY, app.log)
  app.addHook('preClose', async () => sim.releaseWaits())
  app.addHook('onClose', async () => sim.close())
  const latencyMs = config.SIM_LATENCY_MS
  app.register(infobipScope, { sim, api: 'v3', latencyMs })
  app.register(infobipScope, { sim, api: 'v2', latencyMs })
  app.register(inspectionRoutes, { sim })
  return app
}
