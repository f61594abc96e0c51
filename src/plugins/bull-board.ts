import { createHash } from 'node:crypto'
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { maskPhone } from '../domain/phone.js'
import { dlrResults, everyPartition, inboundResults, QUEUE, type DlrJob, type InboundJob } from '../queues.js'
import { matchSecret } from './auth.js'

export const BULL_BOARD_PATH = '/admin/queues'

/**
 * The dashboard's page loads its own scripts and styles, IBM Plex from Google Fonts, and sets
 * inline styles; everything else of helmet's defaults stays. `upgrade-insecure-requests` is left
 * out because operators often reach the dashboard over plain HTTP (a port-forward, an internal
 * network), where it would send every asset request to an https:// URL that does not answer.
 */
const DASHBOARD_HELMET = {
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'", 'https://fonts.googleapis.com'],
      fontSrc: ["'self'", 'data:', 'https://fonts.gstatic.com'],
      imgSrc: ["'self'", 'data:'],
      connectSrc: ["'self'"],
      frameAncestors: ["'none'"],
      upgradeInsecureRequests: null,
    },
  },
}

/** Fields whose values are phone numbers when they look like one (an alphanumeric sender is kept). */
const PHONE_FIELDS = new Set(['to', 'destination', 'from'])
/** Fields dropped from job data wherever they appear: message text (an inbound SMS's `cleanText` too). */
const DROPPED_FIELDS = new Set(['text', 'cleanText'])

/** Queues whose jobs hold a webhook's body as text: shown parsed, so that it can be masked. */
const FORMATTERS: Record<string, (data: DlrJob | InboundJob) => unknown> = {
  [QUEUE.dlr]: (data: DlrJob) => maskJobData({ results: dlrResults(data) }),
  [QUEUE.inbound]: (data: InboundJob) => maskJobData({ results: inboundResults(data) }),
}

/** A queue partition's name on the board: with several partitions each is a queue of its own, `p1.send` for partition 1 of send. */
export const boardName = (queue: string, partition: number, partitions: number): string => (partitions > 1 ? `p${partition}.${queue}` : queue)

/**
 * Bull Board at `/admin/queues` over every queue (docs/operations.md#dashboard), behind HTTP Basic auth. Not mounted at
 * all unless both BULL_BOARD_USER and BULL_BOARD_PASSWORD are set. Read-only unless
 * BULL_BOARD_READ_ONLY=false. Job data and return values are shown without message text, with
 * phone numbers cut to their last four digits (a dlr job holds Infobip's raw reports), and with URLs
 * stripped of their credentials (a callback job holds the client's callback URL). Failed logins
 * count towards the per-address throttle (auth-throttle.ts).
 */
export default fp(
  async function bullBoardPlugin(app) {
    const { config } = app
    const user = config.BULL_BOARD_USER
    const password = config.BULL_BOARD_PASSWORD
    if (!user || !password) {
      app.log.info('Bull Board not mounted: set BULL_BOARD_USER and BULL_BOARD_PASSWORD to enable it')
      return
    }

    const adapters = everyPartition(app.queues).map(({ queue, partition, partitions }) => {
      const named = partitions > 1 ? { prefix: boardName('', partition, partitions), displayName: `${queue.name} (partition ${partition})` } : {}
      const adapter = new BullMQAdapter(queue, { readOnlyMode: config.BULL_BOARD_READ_ONLY, ...named })
      adapter.setFormatter('data', FORMATTERS[queue.name] ?? maskJobData)
      adapter.setFormatter('returnValue', maskJobData)
      return adapter
    })

    const serverAdapter = new FastifyAdapter()
    serverAdapter.setBasePath(BULL_BOARD_PATH)
    createBullBoard({ queues: adapters, serverAdapter, options: { uiConfig: { boardTitle: 'SMS queues' } } })

    const expected = [createHash('sha256').update(`${user}:${password}`).digest()]
    await app.register(async function dashboard(scope) {
      // @fastify/helmet turns a route's `helmet` option into `config.helmet` in its own onRoute
      // hook, which runs before this one (it was registered on the root first); so the per-route
      // configuration is written where its onRequest hook reads it.
      scope.addHook('onRoute', (route) => {
        route.config = { ...route.config, helmet: DASHBOARD_HELMET } as typeof route.config
      })
      // The dashboard's routes have Bull Board's own error handler, so refusals are sent here, not thrown.
      scope.addHook('onRequest', async (request, reply) => {
        const wait = await app.authFailures.retryAfter(request)
        if (wait > 0) return tooManyFailures(reply, wait)
        if (matchSecret(basicCredentials(request), expected) >= 0) return
        await app.authFailures.record(request)
        return challenge(reply)
      })
      await scope.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH })
    })
  },
  { name: 'bull-board', dependencies: ['store', 'auth-throttle'] },
)

/** `user:password` from `Authorization: Basic …`, or '' (which never matches). */
function basicCredentials(request: FastifyRequest): string {
  const [scheme, encoded] = (request.headers.authorization ?? '').split(' ', 2)
  return scheme?.toLowerCase() === 'basic' && encoded ? Buffer.from(encoded, 'base64').toString('utf8') : ''
}

function challenge(reply: FastifyReply) {
  return reply
    .code(401)
    .header('www-authenticate', 'Basic realm="queues", charset="UTF-8"')
    .send({ statusCode: 401, error: 'Unauthorized', message: 'Dashboard credentials required (HTTP Basic)' })
}

function tooManyFailures(reply: FastifyReply, wait: number) {
  return reply
    .code(429)
    .header('retry-after', String(wait))
    .send({ statusCode: 429, error: 'Too Many Requests', message: `Too many failed authentications from this address; retry in ${wait} s` })
}

/**
 * A copy of job data without `text`, with phone-like `to`/`destination`/`from` masked, and with every
 * http(s) URL (a callback's `url`, a message's `callbackUrl`) shown by `maskUrl`.
 */
export function maskJobData(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskJobData)
  if (typeof value === 'string') return maskUrl(value)
  if (value === null || typeof value !== 'object') return value
  const masked: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) {
    if (DROPPED_FIELDS.has(key)) continue
    masked[key] = PHONE_FIELDS.has(key) && isPhoneLike(field) ? maskPhone(String(field).replace(/\D/g, '')) : maskJobData(field)
  }
  return masked
}

const isPhoneLike = (value: unknown): value is string | number =>
  (typeof value === 'string' && /^\+?[\d\s().-]+$/.test(value) && value.replace(/\D/g, '').length >= 5) ||
  (typeof value === 'number' && Number.isInteger(value) && value >= 10_000)

/**
 * An http(s) URL without its credentials: userinfo becomes `***`, each query value (or a parameter
 * without `=`) becomes `***`, and so does a fragment; scheme, host and path are kept, so that the
 * target stays recognisable. Parsed as the callback worker's HTTP client parses it, so what it would
 * send as credentials is what is masked. Any other string is returned as it is.
 */
export function maskUrl(value: string): string {
  if (!URL.canParse(value)) return value
  const url = new URL(value)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return value
  const userinfo = url.username || url.password ? '***@' : ''
  const query = url.search
    .slice(1)
    .split('&')
    .map((part) => (part === '' ? '' : part.includes('=') ? `${part.slice(0, part.indexOf('='))}=***` : '***'))
    .join('&')
  return `${url.protocol}//${userinfo}${url.host}${url.pathname}${url.search ? `?${query}` : ''}${url.hash ? '#***' : ''}`
}
