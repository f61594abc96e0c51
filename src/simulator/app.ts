import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyReply } from 'fastify'
import { request as httpRequest } from 'undici'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ConfigError, inboundUrl, listOf, type Config } from '../config.js'
import { maskPhone } from '../domain/phone.js'
import { analyzeText } from '../domain/segments.js'
import {
  behaviourFor,
  deliveryReport,
  ERRORS,
  errorBody,
  infobipTime,
  logEntry,
  STATUSES,
  supersedes,
  v2Error,
  v3Error,
  worstRefusal,
  type Api,
  type RefusalCode,
  type SentMessage,
  type Shown,
  type SimulatedReport,
  type StatusObject,
  type Violation,
} from './outcomes.js'
import { Reporter } from './reporter.js'
import { Timers } from './timers.js'

/**
 * The built-in Infobip simulator (docs/simulator.md): Infobip's send and logs API, delivery reports pushed to each
 * message's URL, outcomes picked by the destination's last four digits, and knobs for latency, failures
 * and rate limits. Like Infobip it answers status 23 REJECTED_DUPLICATE_MESSAGE_ID for a messageId it has
 * accepted before, so a retry after a lost answer is never sent twice.
 *
 * `/_sim/*` is not part of Infobip's API and needs no key:
 * - `GET /_sim/messages/:messageId`: what it received for a messageId. `submissions` counts the
 *   destinations that carried it (refused and duplicate ones included), `accepted` the acceptances (never
 *   more than one), `reportsPosted` its reports that were POSTed successfully.
 * - `GET /_sim/stats`: send requests, acceptances, `duplicates` (destinations answered 23), reports.
 * - `POST /_sim/auth`, for staging a key rotation or a missing scope; fields left out keep their state:
 *   - `{ "apiKey": "new-key" }`: from now on only `App new-key` is accepted; the old key gets 401.
 *   - `{ "unauthorizedForMs": 3000 }`: every send and logs request gets 401 for that long (0 ends it).
 *   - `{ "forbidden": "logs" }`: logs requests get 403, as for a send-only key without `sms:logs:read`;
 *     `"send"` does the same to sends, `true` to both, `false` to neither.
 *   It answers the state: `{ "unauthorizedForMs": <ms left>, "forbidden": … }`. Errors come in the
 *   calling API version's shape (E401/E403 on /sms/3, UNAUTHORIZED/FORBIDDEN on /sms/2).
 * - `POST /_sim/inbound` `{ from, to, text, messageId?, url? }`: POSTs one inbound SMS in Infobip's
 *   `MO_JSON_2` format to the service (`PUBLIC_BASE_URL/infobip-inbound?token=DLR_WEBHOOK_TOKEN`, or
 *   `url`) and answers what it sent and the service's status code, for trying opt-outs by hand.
 */

export interface SimulatorOptions {
  logger?: boolean | object
}

/** How long a "timeout" failure holds the request when the client does not give up first. */
const HOLD_MS = 60_000
/** How long `POST /_sim/inbound` waits for the service's answer. */
const INBOUND_TIMEOUT_MS = 5000
/** Messages remembered for the logs and inspection APIs; the oldest are forgotten first. */
const MAX_MESSAGES = 200_000
const LOGS_PER_MINUTE = 120
const LOGS_PATH = '/sms/3/logs'
const DEFAULT_SENDER = 'InfoSMS'
/** What a proxy in front of Infobip answers when it loses Infobip's answer (0012). */
const BAD_GATEWAY_PAGE =
  '<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n'

// ---------------------------------------------------------------------------------------------------
// Schemas (lenient like Infobip: unknown fields are accepted and ignored)

const Destination = Type.Object({
  to: Type.String({ minLength: 1, maxLength: 64 }),
  messageId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
})
const Destinations = Type.Array(Destination, { minItems: 1 })

const V3Body = Type.Object({
  messages: Type.Array(
    Type.Object({
      sender: Type.Optional(Type.String()),
      destinations: Destinations,
      content: Type.Object({ text: Type.String({ minLength: 1 }) }),
      webhooks: Type.Optional(
        Type.Object({
          delivery: Type.Optional(Type.Object({ url: Type.Optional(Type.String()), notify: Type.Optional(Type.Boolean()) })),
          callbackData: Type.Optional(Type.String({ maxLength: 4000 })),
        }),
      ),
    }),
    { minItems: 1 },
  ),
  options: Type.Optional(
    Type.Object({
      schedule: Type.Optional(Type.Object({ bulkId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) })),
      includeSmsCountInResponse: Type.Optional(Type.Boolean()),
    }),
  ),
})

const V2Body = Type.Object({
  bulkId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  messages: Type.Array(
    Type.Object({
      from: Type.Optional(Type.String()),
      destinations: Destinations,
      text: Type.String({ minLength: 1 }),
      notifyUrl: Type.Optional(Type.String()),
      callbackData: Type.Optional(Type.String({ maxLength: 4000 })),
    }),
    { minItems: 1 },
  ),
})

/** Repeated (`messageId=a&messageId=b`, as Infobip's SDKs send it), comma-separated, or both. */
const IdList = Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())]))
const LogsQuery = Type.Object({
  messageId: IdList,
  bulkId: IdList,
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
})

// Infobip's status and error objects as the simulator sends them: every field present.
const StatusObjectSchema = Type.Object({
  groupId: Type.Integer(),
  groupName: Type.String(),
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
})
const ErrorObjectSchema = Type.Object({
  groupId: Type.Integer(),
  groupName: Type.String(),
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
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
const errorsOf = <T extends typeof V3Error | typeof V2Error>(shape: T) => ({ 400: shape, 401: shape, 403: shape, 429: shape, 500: shape })

const V3Answer = Type.Object({
  bulkId: Type.String(),
  messages: Type.Array(
    Type.Object({
      messageId: Type.String(),
      status: StatusObjectSchema,
      destination: Type.String(),
      details: Type.Optional(Type.Object({ messageCount: Type.Integer() })),
    }),
  ),
})
const V2Answer = Type.Object({
  bulkId: Type.String(),
  messages: Type.Array(
    Type.Object({
      messageId: Type.String(),
      status: StatusObjectSchema,
      to: Type.String(),
      smsCount: Type.Integer(),
    }),
  ),
})
const LogsAnswer = Type.Object({
  results: Type.Array(
    Type.Object({
      sender: Type.String(),
      destination: Type.String(),
      bulkId: Type.String(),
      messageId: Type.String(),
      sentAt: Type.String(),
      doneAt: Type.Optional(Type.String()),
      messageCount: Type.Integer(),
      price: Price,
      status: StatusObjectSchema,
      error: ErrorObjectSchema,
    }),
  ),
  cursor: Type.Object({ limit: Type.Integer() }),
})

const MessageView = Type.Object({
  messageId: Type.String(),
  to: Type.String(),
  text: Type.String(),
  sender: Type.String(),
  submissions: Type.Integer(),
  accepted: Type.Integer(),
  reportsPosted: Type.Integer(),
})
const StatsView = Type.Object({
  requests: Type.Integer(),
  accepted: Type.Integer(),
  duplicates: Type.Integer(),
  reportsPosted: Type.Integer(),
  reportPostsFailed: Type.Integer(),
  reportsDropped: Type.Integer(),
})
const NotFound = Type.Object({ statusCode: Type.Literal(404), error: Type.String(), message: Type.String() })
const Forbidden = Type.Union([Type.Boolean(), Type.Literal('send'), Type.Literal('logs')])
const AuthChange = Type.Object({
  apiKey: Type.Optional(Type.String({ minLength: 1 })),
  unauthorizedForMs: Type.Optional(Type.Integer({ minimum: 0 })),
  forbidden: Type.Optional(Forbidden),
})
const AuthView = Type.Object({ unauthorizedForMs: Type.Integer(), forbidden: Forbidden })
const InboundRequest = Type.Object({
  from: Type.String({ minLength: 1, maxLength: 64 }),
  to: Type.String({ minLength: 1, maxLength: 64 }),
  text: Type.String({ maxLength: 4000 }),
  messageId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  url: Type.Optional(Type.String({ pattern: '^https?://' })),
})
const InboundResult = Type.Object({
  messageId: Type.String(),
  from: Type.String(),
  to: Type.String(),
  text: Type.String(),
  cleanText: Type.String(),
  keyword: Type.String(),
  receivedAt: Type.String(),
  smsCount: Type.Integer(),
  price: Price,
  callbackData: Type.Null(),
})
const InboundBatch = Type.Object({ results: Type.Array(InboundResult), messageCount: Type.Integer(), pendingMessageCount: Type.Integer() })
const InboundView = Type.Object({ messageId: Type.String(), serviceStatus: Type.Integer(), sent: InboundBatch })
const BadGateway = Type.Object({ statusCode: Type.Literal(502), error: Type.String(), message: Type.String() })

// ---------------------------------------------------------------------------------------------------
// State

/** One destination of a send request as received, the same for v2 and v3. */
interface ReceivedDestination {
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
  /** When the logs API starts showing it (SIM_LOGS_LAG_MS after it was accepted or rejected); unset before. */
  loggedFrom?: number
  /** The latest report, as the logs API shows it. */
  shown?: Shown
}

/** What the answer says about one destination. */
interface Verdict {
  message: SentMessage
  status: StatusObject
}

type SubmitResult = { refused: RefusalCode; offender?: ReceivedDestination } | { verdicts: Verdict[]; hold: boolean; badGateway: boolean }

/** The part of the key's permissions a request needs (docs/infobip.md#api-key-scopes: sending, and `sms:logs:read`). */
type Scope = 'send' | 'logs'

/** Counts calls over the last `windowMs`; a sliding window so that limits hold at any instant. */
class SlidingWindow {
  private readonly times: number[] = []
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Records a call at `now` and returns 0, or refuses it and returns the ms until one is allowed. */
  take(now: number): number {
    while (this.times.length > 0 && this.times[0]! <= now - this.windowMs) this.times.shift()
    if (this.times.length >= this.limit) return this.times[0]! + this.windowMs - now
    this.times.push(now)
    return 0
  }
}

/** Destinations may carry punctuation such as a leading `+`; the service's mask takes digits. */
const masked = (to: string): string => maskPhone(to.replace(/\D/g, ''))

/** `messageId=a,b&messageId=c` → a, b, c. */
const idsOf = (value: string | string[] | undefined): string[] => [value ?? []].flat().flatMap((v) => listOf(v))

class Simulator {
  /** requests: send requests that passed auth and validation; accepted: destinations accepted; duplicates: answered 23. */
  readonly stats = { requests: 0, accepted: 0, duplicates: 0 }
  readonly reporter: Reporter<SimulatedReport>
  readonly logsLimit = new SlidingWindow(LOGS_PER_MINUTE, 60_000)
  private readonly sendLimit: SlidingWindow | undefined
  private readonly messages = new Map<string, SimMessage>()
  /** Refusals already answered per message (by messageId, else by number), for 0004 and 0005. */
  private readonly refusals = new Map<string, number>()
  private readonly timers = new Timers()
  private readonly waits = new Set<() => void>()
  private injectedFailures = 0
  private expectedAuth: Buffer
  private unauthorizedUntil = 0
  private forbidden: Static<typeof Forbidden> = false

  constructor(
    private readonly config: Config,
    apiKey: string,
    private readonly log: FastifyBaseLogger,
  ) {
    this.expectedAuth = sha256(`App ${apiKey}`)
    this.sendLimit = config.SIM_RATE_LIMIT_PER_SECOND > 0 ? new SlidingWindow(config.SIM_RATE_LIMIT_PER_SECOND, 1000) : undefined
    this.reporter = new Reporter<SimulatedReport>({ log, onPosted: (reports) => this.countPosted(reports) })
  }

  /** 401 for a wrong key or while an outage staged by `POST /_sim/auth` lasts; 403 for a scope the key lacks. */
  authError(header: string | undefined, scope: Scope): 401 | 403 | undefined {
    // Constant-time: hashing first makes both sides the same length whatever was sent.
    if (!timingSafeEqual(sha256(header ?? ''), this.expectedAuth) || Date.now() < this.unauthorizedUntil) return 401
    if (this.forbidden === true || this.forbidden === scope) return 403
    return undefined
  }

  changeAuth(change: Static<typeof AuthChange>) {
    if (change.apiKey !== undefined) this.expectedAuth = sha256(`App ${change.apiKey}`)
    if (change.unauthorizedForMs !== undefined) this.unauthorizedUntil = Date.now() + change.unauthorizedForMs
    if (change.forbidden !== undefined) this.forbidden = change.forbidden
    const state = { unauthorizedForMs: Math.max(0, this.unauthorizedUntil - Date.now()), forbidden: this.forbidden }
    this.log.info({ keyChanged: change.apiKey !== undefined, ...state }, 'auth changed')
    return state
  }

  /**
   * One inbound SMS as Infobip forwards it (`MO_JSON_2`, docs/infobip.md#inbound-messages): its first
   * word as Infobip's `keyword` and the rest as `cleanText`, as for a keyword registered with Infobip.
   */
  async postInbound(inbound: Static<typeof InboundRequest>): Promise<Static<typeof InboundView> | { failure: string }> {
    const messageId = inbound.messageId ?? randomUUID()
    const [keyword = '', ...rest] = inbound.text.trim().split(/\s+/)
    const result = {
      messageId,
      from: inbound.from,
      to: inbound.to,
      text: inbound.text,
      cleanText: rest.join(' '),
      keyword: keyword.toUpperCase(),
      receivedAt: infobipTime(Date.now()),
      smsCount: 1,
      price: { pricePerMessage: 0, currency: 'EUR' },
      callbackData: null,
    }
    const sent = { results: [result], messageCount: 1, pendingMessageCount: 0 }
    try {
      const answer = await httpRequest(inbound.url ?? inboundUrl(this.config), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(sent),
        headersTimeout: INBOUND_TIMEOUT_MS,
        bodyTimeout: INBOUND_TIMEOUT_MS,
      })
      await answer.body.dump()
      this.log.info({ messageId, from: masked(inbound.from), to: masked(inbound.to), serviceStatus: answer.statusCode }, 'inbound SMS posted')
      return { messageId, serviceStatus: answer.statusCode, sent }
    } catch (error) {
      // The code only: a message could hold the URL, and with it the token.
      return { failure: (error as { code?: string }).code ?? 'network error' }
    }
  }

  /**
   * Decides a send request: one refused destination refuses the request as a whole (real Infobip rejects
   * a bad request whole); otherwise each destination gets its own verdict. Accepted messages are recorded
   * here, before any latency, so a client that dies while waiting for the answer has nevertheless been
   * accepted.
   */
  submit(api: Api, bulkId: string, received: ReceivedDestination[]): SubmitResult {
    this.stats.requests++
    for (const d of received) this.countSubmission(api, bulkId, d)
    if (this.sendLimit && this.sendLimit.take(Date.now()) > 0) return { refused: 429 }
    // Every destination's refusal counts as answered, even when another one's code is the one sent.
    const refusals = received.map((d) => this.refusalFor(d))
    const refused = worstRefusal(refusals.filter((code) => code !== undefined))
    if (refused) return { refused, offender: received[refusals.indexOf(refused)] }
    const failure = this.injectedFailure()
    if (failure === 'error') return { refused: 500 }
    const verdicts = received.map((d) => this.decide(api, bulkId, d))
    // The gateway fails on the way back from an acceptance: a retry that is answered 23 gets through.
    const badGateway = received.some((d, i) => behaviourFor(d.to).badGateway === true && verdicts[i]!.status === STATUSES.PENDING_ACCEPTED)
    this.log.debug({ bulkId, messages: verdicts.length, hold: failure === 'timeout', badGateway }, 'decided')
    return { verdicts, hold: failure === 'timeout', badGateway }
  }

  lookup(query: { messageId?: string | string[]; bulkId?: string | string[]; limit: number }) {
    const now = Date.now()
    const ids = [...new Set(idsOf(query.messageId))]
    const bulkIds = new Set(idsOf(query.bulkId))
    const candidates = ids.length > 0 ? ids.map((id) => this.messages.get(id)).filter((m) => m !== undefined) : [...this.messages.values()].reverse() // newest first, like Infobip
    return candidates
      .filter((m) => m.loggedFrom !== undefined && m.loggedFrom <= now && (bulkIds.size === 0 || bulkIds.has(m.bulkId)))
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

  private countSubmission(api: Api, bulkId: string, d: ReceivedDestination): void {
    if (d.messageId === undefined) return // nothing to look it up by until it is accepted
    const known = this.messages.get(d.messageId)
    if (known) known.submissions++
    else this.remember({ ...this.sent(api, bulkId, d.messageId, d), text: d.text, submissions: 1, accepted: 0, reportsPosted: 0 })
  }

  private refusalFor(d: ReceivedDestination): RefusalCode | undefined {
    const refuse = behaviourFor(d.to).refuse
    if (!refuse) return undefined
    const key = d.messageId ?? `to:${d.to}`
    const answered = this.refusals.get(key) ?? 0
    if (answered >= refuse.times) return undefined
    this.refusals.set(key, answered + 1)
    this.log.info({ messageId: d.messageId, to: masked(d.to), code: refuse.code }, 'refusing by destination')
    return refuse.code
  }

  /** SIM_FAILURE_RATE: failures alternate between a 500 and a timeout, so exactly half are each. */
  private injectedFailure(): 'error' | 'timeout' | undefined {
    if (Math.random() >= this.config.SIM_FAILURE_RATE) return undefined
    this.injectedFailures++
    return this.injectedFailures % 2 === 1 ? 'error' : 'timeout'
  }

  /**
   * Accepts one destination, or rejects it on its own: 23 when its messageId was accepted before (refused
   * tries of 0004 and 0005 were not), else the REJECTED status its outcome says (0011). Only an acceptance
   * or a rejection of its own puts a message in the logs.
   */
  private decide(api: Api, bulkId: string, d: ReceivedDestination): Verdict {
    const sent = this.sent(api, bulkId, d.messageId ?? randomUUID(), d)
    const known = this.messages.get(sent.messageId)
    if (known && known.accepted > 0) {
      // The earlier message goes on untouched: same reports, same log entry, not sent again.
      this.stats.duplicates++
      return { message: sent, status: STATUSES.REJECTED_DUPLICATE_MESSAGE_ID }
    }
    const record: SimMessage = known
      ? Object.assign(known, sent, { text: d.text, shown: undefined })
      : this.remember({ ...sent, text: d.text, submissions: 1, accepted: 0, reportsPosted: 0 })
    record.loggedFrom = sent.sentAt + this.config.SIM_LOGS_LAG_MS
    const { reject } = behaviourFor(d.to)
    if (reject) {
      record.shown = { status: reject, error: ERRORS.NO_ERROR, doneAt: sent.sentAt }
      return { message: sent, status: reject }
    }
    record.accepted++
    this.stats.accepted++
    this.scheduleReports(record, sent, d.url)
    return { message: sent, status: STATUSES.PENDING_ACCEPTED }
  }

  private sent(api: Api, bulkId: string, messageId: string, d: ReceivedDestination): SentMessage {
    return {
      api,
      bulkId,
      messageId,
      to: d.to,
      sender: d.sender,
      callbackData: d.callbackData,
      messageCount: analyzeText(d.text).segments,
      sentAt: Date.now(),
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

  private countPosted(reports: readonly SimulatedReport[]): void {
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
    const code = sim.authError(request.headers.authorization, request.routeOptions.url === LOGS_PATH ? 'logs' : 'send')
    if (code) return reply.code(code).send(errorBody(api, code))
  })
  // onSend runs after the handler has recorded what it accepted: latency never hides an acceptance.
  if (latencyMs > 0)
    scope.addHook('onSend', async () => {
      await sim.wait(latencyMs).done
    })
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
    const path = v.instancePath
      .replace(/^\//, '')
      .replace(/\/(\d+)/g, '[$1]')
      .replaceAll('/', '.')
    const missing = typeof v.params['missingProperty'] === 'string' ? v.params['missingProperty'] : undefined
    return { property: [path, missing].filter(Boolean).join('.') || 'body', violation: v.message ?? 'is invalid' }
  })
}

type ErrorBuilder<B> = (code: RefusalCode, description?: string, violations?: Violation[]) => B

/**
 * The answers without per-destination results: a refused submission gets its error in the API's own
 * shape, a held one (a "timeout") no answer, one behind a failing gateway (0012) the gateway's page.
 */
async function answerWithoutResults<B>(sim: Simulator, reply: FastifyReply, result: SubmitResult, build: ErrorBuilder<B>) {
  if ('refused' in result) {
    if (result.refused === 429) reply.header('retry-after', '1')
    return reply.code(result.refused).send(refusal(build, result.refused, result.offender))
  }
  if (result.hold) {
    await sim.hold(reply)
    return reply
  }
  return reply.code(502).type('text/html').send(BAD_GATEWAY_PAGE)
}

/** The body for a refused request: a 400 names the destination that caused it. */
function refusal<B>(build: ErrorBuilder<B>, code: RefusalCode, offender: ReceivedDestination | undefined): B {
  if (code !== 400 || !offender) return build(code)
  const description = `Invalid destination address: ${masked(offender.to)} cannot receive messages.`
  return build(400, description, [{ property: `${offender.path}.to`, violation: 'invalid destination address' }])
}

const v3Routes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const schema = { body: V3Body, response: { 200: V3Answer, ...errorsOf(V3Error) } }
  scope.post('/sms/3/messages', { schema }, async (request, reply) => {
    const bulkId = request.body.options?.schedule?.bulkId ?? randomUUID()
    const received = request.body.messages.flatMap((m, i) =>
      m.destinations.map((d, j): ReceivedDestination => ({
        path: `messages[${i}].destinations[${j}]`,
        messageId: d.messageId,
        to: d.to,
        text: m.content.text,
        sender: m.sender ?? DEFAULT_SENDER,
        url: m.webhooks?.delivery?.notify === false ? undefined : m.webhooks?.delivery?.url,
        callbackData: m.webhooks?.callbackData,
      })),
    )
    const result = sim.submit('v3', bulkId, received)
    if ('refused' in result || result.hold || result.badGateway) return answerWithoutResults(sim, reply, result, v3Error)
    // Infobip's default is false: without it, the answer does not say how many parts a message took.
    const withCount = request.body.options?.includeSmsCountInResponse === true
    return {
      bulkId,
      messages: result.verdicts.map(({ message: m, status }) => ({
        messageId: m.messageId,
        status,
        destination: m.to,
        ...(withCount ? { details: { messageCount: m.messageCount } } : {}),
      })),
    }
  })

  const logsSchema = { querystring: LogsQuery, response: { 200: LogsAnswer, ...errorsOf(V3Error) } }
  scope.get(LOGS_PATH, { schema: logsSchema }, async (request, reply) => {
    const waitMs = sim.logsLimit.take(Date.now())
    if (waitMs > 0)
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(waitMs / 1000)))
        .send(v3Error(429))
    return { results: sim.lookup(request.query), cursor: { limit: request.query.limit } }
  })
}

const v2Routes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const schema = { body: V2Body, response: { 200: V2Answer, ...errorsOf(V2Error) } }
  scope.post('/sms/2/text/advanced', { schema }, async (request, reply) => {
    const bulkId = request.body.bulkId ?? randomUUID()
    const received = request.body.messages.flatMap((m, i) =>
      m.destinations.map((d, j): ReceivedDestination => ({
        path: `messages[${i}].destinations[${j}]`,
        messageId: d.messageId,
        to: d.to,
        text: m.text,
        sender: m.from ?? DEFAULT_SENDER,
        url: m.notifyUrl,
        callbackData: m.callbackData,
      })),
    )
    const result = sim.submit('v2', bulkId, received)
    if ('refused' in result || result.hold || result.badGateway) return answerWithoutResults(sim, reply, result, v2Error)
    return {
      bulkId,
      messages: result.verdicts.map(({ message: m, status }) => ({
        messageId: m.messageId,
        status,
        to: m.to,
        smsCount: m.messageCount,
      })),
    }
  })
}

/** Test inspection, no auth: what the simulator received and posted, and the key's state (see the top). */
const inspectionRoutes: FastifyPluginAsyncTypebox<{ sim: Simulator }> = async (scope, { sim }) => {
  const params = Type.Object({ messageId: Type.String() })
  scope.get('/_sim/messages/:messageId', { schema: { params, response: { 200: MessageView, 404: NotFound } } }, async (request, reply) => {
    const view = sim.view(request.params.messageId)
    if (!view) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'unknown messageId' })
    return view
  })
  scope.get('/_sim/stats', { schema: { response: { 200: StatsView } } }, async () => sim.statsView())
  scope.post('/_sim/auth', { schema: { body: AuthChange, response: { 200: AuthView } } }, async (request) => sim.changeAuth(request.body))
  scope.post('/_sim/inbound', { schema: { body: InboundRequest, response: { 200: InboundView, 502: BadGateway } } }, async (request, reply) => {
    const result = await sim.postInbound(request.body)
    if ('failure' in result) return reply.code(502).send({ statusCode: 502, error: 'Bad Gateway', message: `the service did not answer (${result.failure})` })
    return result
  })
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
