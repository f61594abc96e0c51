import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { acknowledge, writesFrom } from '../durability.js'
import { HttpError } from '../errors.js'
import { parseAnyBodyAsJson } from '../json-depth.js'
import dlrAuth from '../plugins/dlr-auth.js'
import { inboundJobOptions } from '../queues.js'
import { shardOfKey } from '../shards.js'
import { ErrorResponse } from '../schemas/messages.js'
import { DLR_MAX_RESULTS, DlrHeaders, DlrQuery, InboundAccepted, InboundBody } from '../schemas/infobip.js'

/** As for delivery reports: up to 2,000 messages, pretty-printed. */
const BODY_LIMIT = 4 * 1024 * 1024

/**
 * `POST /infobip-inbound` (docs/api.md#infobip-inbound-sms): Infobip's inbound SMS, with the same
 * rules as `/infobip-dlr` — the token, then the batch as the text Infobip sent becomes one inbound job
 * before the 200, and nothing else happens here. A 503 (Redis unreachable) makes Infobip retry.
 */
const infobipInbound: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(dlrAuth)
  const queue = app.queues.inbound

  parseAnyBodyAsJson(app)

  app.post(
    '/infobip-inbound',
    {
      bodyLimit: BODY_LIMIT,
      onRequest: app.authenticateInfobip,
      schema: {
        summary: 'Infobip inbound SMS (MO_JSON_2): opt-out and opt-in keywords',
        tags: ['infobip'],
        querystring: DlrQuery,
        headers: DlrHeaders,
        body: InboundBody,
        response: {
          200: InboundAccepted,
          400: ErrorResponse,
          401: ErrorResponse,
          403: ErrorResponse,
          413: ErrorResponse,
          429: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request) => {
      const { results } = request.body
      if (results.length > DLR_MAX_RESULTS) {
        throw new HttpError(413, `body/results has ${results.length} messages; at most ${DLR_MAX_RESULTS} per POST`, 'TOO_MANY_RESULTS')
      }
      // A POST stays one job, in the partition of its first sender: one sender's messages always go
      // to the same partition, whose worker applies them in order.
      const partition = shardOfKey(JSON.stringify((results[0] as { from?: unknown } | undefined)?.from ?? ''), queue.partitions.length)
      await queue.partitions[partition]!.add('inbound', { body: request.rawBody }, inboundJobOptions)
      await acknowledge(writesFrom([app.queueRedis], [app.store.keys.shardRoot(partition)]), app.config)
      return { received: results.length }
    },
  )
}

export default infobipInbound
