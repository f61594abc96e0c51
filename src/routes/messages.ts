import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { acceptMessages } from '../accept-messages.js'
import { GroupCommit } from '../group-commit.js'
import { normalizePhone } from '../domain/phone.js'
import { FieldError, HttpError } from '../errors.js'
import { countCreated } from '../metrics.js'
import { registerRateLimit } from '../plugins/rate-limit.js'
import { MessageResource } from '../domain/message.js'
import { AuthHeaders, BatchBody, ErrorResponse, IdParams, NewMessageBody, SearchPage, SearchQuerystring } from '../schemas/messages.js'

const errors = { 400: ErrorResponse, 401: ErrorResponse, 413: ErrorResponse, 422: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse }
const security = [{ bearerAuth: [] }]

/** `POST /messages`, `POST /messages/batch`, `GET /messages/:id` (docs/api.md). */
const messages: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app
  const writer = new GroupCommit({ store: app.store, sendQueue: app.queues.send, config })
  const deps = { config, store: app.store, writer, onCreated: (n: number, tenant: string) => countCreated(app.metrics, n, tenant) }
  app.addHook('onRequest', app.authenticate)
  await registerRateLimit(app)

  app.post(
    '/messages',
    {
      bodyLimit: 64 * 1024,
      schema: {
        summary: 'Send one SMS',
        tags: ['messages'],
        security,
        headers: AuthHeaders,
        body: NewMessageBody,
        response: { 200: MessageResource, 202: MessageResource, ...errors },
      },
    },
    async (request, reply) => {
      const { messages, replayed } = await acceptMessages(deps, request.tenant, [request.body], () => 'body', request.headers['idempotency-key'])
      const message = messages[0]!
      if (replayed) return reply.code(200).header('idempotent-replayed', 'true').send(message)
      return reply.code(202).header('location', `/messages/${message.id}`).send(message)
    },
  )

  app.post(
    '/messages/batch',
    {
      bodyLimit: 4 * 1024 * 1024,
      schema: {
        summary: 'Send up to 1,000 SMS, all or nothing',
        tags: ['messages'],
        security,
        headers: AuthHeaders,
        body: BatchBody,
        response: { 200: Type.Object({ messages: Type.Array(MessageResource) }), 202: Type.Object({ messages: Type.Array(MessageResource) }), ...errors },
      },
    },
    async (request, reply) => {
      const { messages, replayed } = await acceptMessages(deps, request.tenant, request.body.messages, (i) => `body/messages/${i}`, request.headers['idempotency-key'])
      if (replayed) reply.header('idempotent-replayed', 'true')
      return reply.code(replayed ? 200 : 202).send({ messages })
    },
  )

  app.get(
    '/messages',
    {
      schema: {
        summary: 'Find messages, newest first',
        tags: ['messages'],
        security,
        querystring: SearchQuerystring,
        response: { 200: SearchPage, 400: ErrorResponse, 401: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      const q = request.query
      let to: string | undefined
      if (q.to !== undefined) {
        to = normalizePhone(q.to)
        if (!to) throw new FieldError('querystring/to', 'must be a valid international phone number')
      }
      for (const field of ['since', 'until'] as const) {
        if (q[field] !== undefined && Number.isNaN(Date.parse(q[field]))) throw new FieldError(`querystring/${field}`, 'must be an ISO 8601 date-time')
      }
      return app.store.search({ ...q, tenant: request.tenant.name, to, limit: q.limit === undefined ? 50 : Number(q.limit) })
    },
  )

  app.get(
    '/messages/:id',
    {
      schema: {
        summary: 'Where is my message',
        tags: ['messages'],
        security,
        params: IdParams,
        response: { 200: MessageResource, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      // Another tenant's message is not found, exactly like an unknown one (docs/tenants.md).
      const [message] = await app.store.getOwned(request.tenant.name, [request.params.id])
      if (!message) throw new HttpError(404, `Message ${request.params.id} not found (unknown or expired)`, 'NOT_FOUND')
      return message
    },
  )
}

export default messages
