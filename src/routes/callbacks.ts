import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { HttpError } from '../errors.js'
import { registerRateLimit } from '../plugins/rate-limit.js'
import { ErrorResponse } from '../schemas/messages.js'
import { DEFAULT_TENANT } from '../tenants.js'

/**
 * `POST /callbacks/{eventId}/replay`: sends again a client callback that exhausted its retries
 * (the callback queue's failed jobs are the dead-letter list, visible in the dashboard).
 */
const callbacks: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.authenticate)
  await registerRateLimit(app)

  app.post(
    '/callbacks/:eventId/replay',
    {
      schema: {
        summary: 'Replay a dead-lettered client callback',
        tags: ['messages'],
        security: [{ bearerAuth: [] }],
        params: Type.Object({ eventId: Type.String({ pattern: '^msg_[0-9A-Z]{26}-\\d+$', examples: ['msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F-3'] }) }),
        response: {
          202: Type.Object({ eventId: Type.String(), status: Type.Literal('requeued') }),
          401: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
          429: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const { eventId } = request.params
      const job = await app.queues.callback.getJob(eventId)
      // Another tenant's callback is unknown, exactly like one that does not exist.
      if (!job || (job.data.tenant ?? DEFAULT_TENANT) !== request.tenant.name)
        throw new HttpError(404, `No callback ${eventId} (unknown, or delivered)`, 'NOT_FOUND')
      if (!(await job.isFailed())) throw new HttpError(409, `Callback ${eventId} is not dead-lettered; it is still being delivered`, 'CONFLICT')
      await job.retry('failed', { resetAttemptsMade: true })
      return reply.code(202).send({ eventId, status: 'requeued' })
    },
  )
}

export default callbacks
