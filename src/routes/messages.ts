import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { acceptMessages } from '../accept-messages.js'
import { GroupCommit } from '../group-commit.js'
import { normalizePhone } from '../domain/phone.js'
import { FieldError, HttpError } from '../errors.js'
import { countCreated, countTransitions } from '../metrics.js'
import { registerRateLimit } from '../plugins/rate-limit.js'
import { Cancels } from '../cancels.js'
import { acknowledge, writesFrom } from '../durability.js'
import { callbackJobOptions } from '../callbacks.js'
import { makeAfterChanges } from '../changes.js'
import { MessageResource } from '../domain/message.js'
import { AuthHeaders, BatchBody, ErrorResponse, IdParams, NewMessageBody, SearchPage, SearchQuerystring } from '../schemas/messages.js'

const notFound = (id: string) => new HttpError(404, `Message ${id} not found (unknown or expired)`, 'NOT_FOUND')
const CancelConflict = Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String(), resource: MessageResource })

const errors = { 400: ErrorResponse, 401: ErrorResponse, 413: ErrorResponse, 422: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse }
const security = [{ bearerAuth: [] }]

/** `POST /messages`, `POST /messages/batch`, `GET /messages/:id` (docs/api.md). */
const messages: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app
  // Callbacks and metrics of the changes the API makes itself: cancels, and numbers suppressed at acceptance.
  const afterChanges = makeAfterChanges({
    callbackQueue: app.queues.callback,
    callbackOptions: callbackJobOptions(config),
    onApplied: countTransitions(app.metrics),
  })
  const writer = new GroupCommit({ store: app.store, sendQueue: app.queues.send, config, afterChanges, connections: [app.redis, app.queueRedis] })
  const cancels = new Cancels(app.store, app.queues.send, afterChanges)
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
      const { messages, replayed } = await acceptMessages(
        deps,
        request.tenant,
        request.body.messages,
        (i) => `body/messages/${i}`,
        request.headers['idempotency-key'],
      )
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
      if (!message) throw notFound(request.params.id)
      return message
    },
  )

  app.post(
    '/messages/:id/cancel',
    {
      schema: {
        summary: 'Cancel a message that has not been sent',
        description:
          'A QUEUED message (scheduled or waiting for a worker) ends CANCELED and is never submitted. Cancel and a worker’s claim are decided atomically.',
        tags: ['messages'],
        security,
        params: IdParams,
        response: { 200: MessageResource, 401: ErrorResponse, 404: ErrorResponse, 409: CancelConflict, 429: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const writes = writesFrom([app.redis, app.queueRedis], app.store.slotsOf([id]))
      const [result] = await cancels.cancel(request.tenant.name, [id])
      const [message] = await app.store.getOwned(request.tenant.name, [id])
      if (result!.result === 'missing' || !message) throw notFound(id)
      if (result!.result === 'refused') {
        const why = message.final ? 'is final' : 'has been submitted to Infobip'
        return reply.code(409).send({
          statusCode: 409,
          error: 'Conflict',
          message: `Message ${id} is ${message.status}: it ${why} and can no longer be cancelled`,
          resource: message,
        })
      }
      await acknowledge(writes, config)
      return message
    },
  )

  app.post(
    '/messages/cancel',
    {
      schema: {
        summary: 'Cancel every message of a campaign (by reference) that has not been sent',
        tags: ['messages'],
        security,
        body: Type.Object(
          { reference: Type.String({ minLength: 1, maxLength: 100 }) },
          { additionalProperties: false, examples: [{ reference: 'campaign-7' }] },
        ),
        response: {
          200: Type.Object({ canceled: Type.Integer(), notCanceled: Type.Integer({ description: 'messages with this reference already submitted or final' }) }),
          400: ErrorResponse,
          401: ErrorResponse,
          429: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request) => {
      const writes = writesFrom([app.redis, app.queueRedis], app.store.slotsOf())
      const counts = await cancels.byReference(request.tenant.name, request.body.reference)
      await acknowledge(writes, config)
      return counts
    },
  )
}

export default messages
