import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import fastifyEnv from '@fastify/env'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyRequest,
  type FastifyInstance,
  type FastifySchemaValidationError,
  type FastifyServerOptions,
} from 'fastify'
import { ConfigSchema, subnetsOf, type Config } from './config.js'
import { HttpError, isRedisUnavailable } from './errors.js'
import { depthLimitedJsonParser } from './json-depth.js'
import { loggerOptions } from './logger.js'
import authPlugin from './plugins/auth.js'
import authThrottle from './plugins/auth-throttle.js'
import securityHeaders from './plugins/security-headers.js'
import bullBoardPlugin from './plugins/bull-board.js'
import docsPlugin from './plugins/docs.js'
import metricsPlugin from './plugins/metrics.js'
import storePlugin from './plugins/store.js'
import callbackRoutes from './routes/callbacks.js'
import healthRoutes from './routes/health.js'
import infobipDlrRoutes from './routes/infobip-dlr.js'
import infobipInboundRoutes from './routes/infobip-inbound.js'
import messageRoutes from './routes/messages.js'
import suppressionRoutes from './routes/suppressions.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** One info line per request, when it completes; the start of a request is logged at debug. */
class QuietStart extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request')
  }
}

export interface BuildOptions {
  /** Fastify's `logger` option; defaults to JSON logs with redaction at LOG_LEVEL. */
  logger?: FastifyServerOptions['logger']
}

/**
 * The API as a Fastify instance: no listen(), no process handling (see server.ts). Tests build it
 * with their own config.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const logger = options.logger ?? loggerOptions(config.LOG_LEVEL)
  const app = Fastify({
    logger,
    trustProxy: trustedProxies(config.TRUST_PROXY),
    // A client that trickles its request is cut off after 30 s. Node's own headersTimeout (60 s)
    // would otherwise set the pace, so both are given, checked every second.
    requestTimeout: 30_000,
    http: { requestTimeout: 30_000, headersTimeout: 30_000, connectionsCheckingInterval: 1_000 },
    bodyLimit: 64 * 1024,
    // The client's x-request-id is read by requestId() only, which refuses what could forge a log line.
    requestIdHeader: false,
    logController: new QuietStart(),
    genReqId: requestId,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    schemaErrorFormatter: (errors, dataVar) => new Error(validationMessage(errors, dataVar)),
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Every plugin and route reads its settings from `app.config`: @fastify/env checks what loadConfig()
  // returned (or a test built) against the same schema and decorates it.
  await app.register(fastifyEnv, { schema: structuredClone(ConfigSchema), data: config, env: false })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error instanceof HttpError ? error.statusCode : isRedisUnavailable(error) ? 503 : (error.statusCode ?? 500)
    if (status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: error.code, statusCode: status }, error.message)
    // A 503 of our own says why, for clients: too few replicas confirmed a write (durability.ts).
    const unavailable = error instanceof HttpError ? error.message : 'Service temporarily unavailable: storage is unreachable, nothing was stored'
    const message = status === 503 ? unavailable : status >= 500 ? 'Internal Server Error' : error.message
    if (status === 503) reply.header('retry-after', '1')
    return reply.code(status).send({ statusCode: status, error: httpErrorName(status), message })
  })
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method} ${request.url.split('?')[0]} not found` }),
  )
  // Set first, so that errors and 404s carry it too (docs/api.md#request-ids).
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  // Every JSON route, before any is registered: JSON.parse of a body nested a million deep blocks the
  // event loop for a second, so the depth is checked on the text first (docs/api.md#errors).
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, depthLimitedJsonParser(app.getDefaultJsonParser('error', 'error')))

  try {
    await app.register(securityHeaders)
    await app.register(storePlugin)
    await app.register(authThrottle)
    await app.register(authPlugin)
    await app.register(bullBoardPlugin)
    await app.register(docsPlugin)
    await app.register(metricsPlugin)
    await app.register(healthRoutes)
    await app.register(messageRoutes)
    await app.register(infobipDlrRoutes)
    await app.register(infobipInboundRoutes)
    await app.register(callbackRoutes)
    await app.register(suppressionRoutes)
  } catch (error) {
    // A plugin refused to start (a bad DLR_ALLOWED_IPS, say): close what the others opened.
    await app.close().catch(() => {})
    throw error
  }
  return app
}

/**
 * TRUST_PROXY (docs/configuration.md#api-listener) as Fastify's trustProxy: `false`, `true`, or the
 * proxies' addresses and CIDRs, whose X-Forwarded-For entries proxy-addr skips from the right.
 */
function trustedProxies(value: string): boolean | string[] {
  const setting = value.trim().toLowerCase()
  if (setting === 'true' || setting === 'false') return setting === 'true'
  return subnetsOf(value, 'TRUST_PROXY', 'false, true or comma-separated IP addresses or CIDRs').map((subnet) => subnet.entry)
}

/** A client's id of 1–64 safe characters is kept (docs/api.md#request-ids); anything else could forge log lines or headers. */
function requestId(request: IncomingMessage): string {
  const id = request.headers['x-request-id']
  return typeof id === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(id) ? id : randomUUID()
}

/** One line naming the field: `body/messages/3/to must be string`, `body/extra is not allowed`. */
function validationMessage(errors: FastifySchemaValidationError[], dataVar: string): string {
  const e = errors[0]
  if (!e) return `${dataVar} is invalid`
  const path = `${dataVar}${e.instancePath}`
  const params = e.params as { additionalProperty?: string; missingProperty?: string }
  if (e.keyword === 'additionalProperties') return `${path}/${params.additionalProperty} is not allowed`
  if (e.keyword === 'required') return `${path}/${params.missingProperty} is required`
  return `${path} ${e.message}`
}

const NAMES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
}
const httpErrorName = (status: number) => NAMES[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request')
