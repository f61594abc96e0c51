import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { acknowledge, writesFrom } from '../durability.js'
import { HttpError } from '../errors.js'
import { parseAnyBodyAsJson } from '../json-depth.js'
import dlrAuth from '../plugins/dlr-auth.js'
import { bodiesByPartition, dlrJobOptions, reportMessageId } from '../queues.js'
import { shardOf } from '../shards.js'
import { ErrorResponse } from '../schemas/messages.js'
import { DLR_MAX_RESULTS, DlrAccepted, DlrBody, DlrHeaders, DlrQuery } from '../schemas/infobip.js'
import { annotate, ATTR } from '../tracing.js'

/** 2,000 realistic reports take about 1.5 MB; pretty-printed ones up to twice that. */
const BODY_LIMIT = 4 * 1024 * 1024

/**
 * `POST /infobip-dlr` (docs/api.md#infobip-delivery-reports): the batch, as the text Infobip sent,
 * becomes one dlr job — one round trip to Redis — before the 200, and nothing else happens here. With
 * several partitions, it becomes one job per partition its reports' messages are in, so that each
 * job's transitions are one shard's. A 503 (Redis unreachable) makes Infobip retry.
 */
const infobipDlr: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(dlrAuth)
  const queue = app.queues.dlr

  parseAnyBodyAsJson(app)

  app.post(
    '/infobip-dlr',
    {
      bodyLimit: BODY_LIMIT,
      onRequest: app.authenticateInfobip,
      schema: {
        summary: 'Infobip delivery reports (v3 or v2 shape)',
        tags: ['infobip'],
        querystring: DlrQuery,
        headers: DlrHeaders,
        body: DlrBody,
        response: { 200: DlrAccepted, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 413: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      const { results } = request.body
      if (results.length > DLR_MAX_RESULTS) {
        throw new HttpError(413, `body/results has ${results.length} reports; at most ${DLR_MAX_RESULTS} per POST`, 'TOO_MANY_RESULTS')
      }
      annotate({ [ATTR.reportCount]: results.length })
      const bodies = bodiesByPartition(request.rawBody, results, queue.partitions.length, (r) => shardOf(reportMessageId(r)))
      await Promise.all([...bodies].map(([p, body]) => queue.partitions[p]!.add('dlr', { body }, dlrJobOptions)))
      await acknowledge(
        writesFrom(
          [app.queueRedis],
          [...bodies.keys()].map((p) => app.store.keys.shardRoot(p)),
        ),
        app.config,
      )
      return { received: results.length }
    },
  )
}

export default infobipDlr
