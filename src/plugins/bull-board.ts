import { createHash } from 'node:crypto'
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { Queue } from 'bullmq'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { maskPhone } from '../domain/phone.js'
import { dlrResults, QUEUE, type DlrJob } from '../queues.js'
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
/** Fields dropped from job data wherever they appear: message text. */
const DROPPED_FIELDS = new Set(['text'])

/**
 * Bull Board at `/admin/queues` over every queue (docs/operations.md#dashboard), behind HTTP Basic auth. Not mounted at
 * all unless both BULL_BOARD_USER and BULL_BOARD_PASSWORD are set. Read-only unless
 * BULL_BOARD_READ_ONLY=false. Job data and return values are shown without message text and with
 * phone numbers cut to their last four digits: a dlr job holds Infobip's raw reports.
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

    const queues: Queue[] = Object.values(app.queues)
    const adapters = queues.map((queue) => {
      const adapter = new BullMQAdapter(queue, { readOnlyMode: config.BULL_BOARD_READ_ONLY })
      // A dlr job holds the POST's body as text: shown parsed, so that it can be masked.
      adapter.setFormatter('data', queue.name === QUEUE.dlr ? (data: DlrJob) => maskJobData({ results: dlrResults(data) }) : maskJobData)
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
      scope.addHook('onRequest', async (request, reply) => {
        if (matchSecret(basicCredentials(request), expected) < 0) return challenge(reply)
      })
      await scope.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH })
    })
  },
  { name: 'bull-board', dependencies: ['store'] },
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

/** A copy of job data without `text` and with phone-like `to`/`destination`/`from` masked. */
export function maskJobData(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskJobData)
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
