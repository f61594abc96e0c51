import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { normalizePhone } from '../domain/phone.js'
import { acknowledge, writesFrom } from '../durability.js'
import { FieldError, HttpError } from '../errors.js'
import { registerRateLimit } from '../plugins/rate-limit.js'
import { ErrorResponse } from '../schemas/messages.js'

const Suppression = Type.Object(
  {
    to: Type.String({ description: 'digits only, as stored' }),
    reason: Type.Union([Type.String(), Type.Null()]),
    source: Type.Union([Type.Literal('api'), Type.Literal('inbound')], { description: 'api: put by the tenant; inbound: an opt-out reply (STOP)' }),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Suppression' },
)
const ToParams = Type.Object({ to: Type.String({ minLength: 1, maxLength: 32, description: 'the number in any notation accepted for `to`, URL-encoded' }) })
const security = [{ bearerAuth: [] }]
const tags = ['suppressions']

/**
 * The tenant's opt-out list (docs/api.md#suppressions): messages to a number on it are accepted and
 * end REJECTED (SUPPRESSED) without reaching Infobip, and so do queued ones when they are claimed.
 */
const suppressions: FastifyPluginAsyncTypebox = async (app) => {
  // A change is written to every shard's copy of the list.
  const everyShard = () => writesFrom([app.redis], app.store.slotsOf())
  app.addHook('onRequest', app.authenticate)
  await registerRateLimit(app)

  const number = (to: string) => {
    const normalized = normalizePhone(to)
    if (!normalized) throw new FieldError('params/to', 'must be a valid international phone number, e.g. +41 79 302 67 27')
    return normalized
  }
  const notFound = (to: string) => new HttpError(404, `${to} is not on the suppression list`, 'NOT_FOUND')

  app.put(
    '/suppressions/:to',
    {
      schema: {
        summary: 'Put a number on the suppression list (idempotent)',
        tags,
        security,
        params: ToParams,
        body: Type.Object(
          { reason: Type.Optional(Type.String({ maxLength: 200 })) },
          { additionalProperties: false, examples: [{ reason: 'asked by phone' }] },
        ),
        response: { 200: Suppression, 400: ErrorResponse, 401: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse },
      },
      // The body is optional: a PUT without one is a PUT of `{}`.
      preValidation: async (request) => {
        request.body ??= {}
      },
    },
    async (request) => {
      const [entry] = await app.store.suppress([request.tenant.name], number(request.params.to), { reason: request.body.reason ?? null, source: 'api' })
      await acknowledge(everyShard(), app.config)
      return entry
    },
  )

  app.get(
    '/suppressions/:to',
    {
      schema: {
        summary: 'Is a number on the suppression list',
        tags,
        security,
        params: ToParams,
        response: { 200: Suppression, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const to = number(request.params.to)
      const entry = await app.store.suppression(request.tenant.name, to)
      if (!entry) throw notFound(to)
      return entry
    },
  )

  app.delete(
    '/suppressions/:to',
    {
      schema: {
        summary: 'Take a number off the suppression list',
        tags,
        security,
        params: ToParams,
        response: { 204: Type.Null(), 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request, reply) => {
      const to = number(request.params.to)
      const [removed] = await app.store.unsuppress([request.tenant.name], to)
      if (!removed) throw notFound(to)
      await acknowledge(everyShard(), app.config)
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/suppressions',
    {
      schema: {
        summary: 'List the suppression list',
        tags,
        security,
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]\\d{0,1}|[1-4]\\d{2}|500)$', description: '1–500, default 50' })),
            cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$', description: 'nextCursor of the previous page' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ suppressions: Type.Array(Suppression), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
          400: ErrorResponse,
          401: ErrorResponse,
        },
      },
    },
    async (request) => app.store.suppressions(request.tenant.name, request.query.cursor, request.query.limit === undefined ? 50 : Number(request.query.limit)),
  )
}

export default suppressions
