import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HttpError } from '../errors.js'
import dlrAuth from '../plugins/dlr-auth.js'
import { dlrJobOptions } from '../queues.js'
import { ErrorResponse } from '../schemas/messages.js'
import { DLR_MAX_RESULTS, DlrAccepted, DlrBody, DlrHeaders, DlrQuery } from '../schemas/infobip.js'

const MAX_DEPTH = 32

declare module 'fastify' {
  interface FastifyRequest {
    /** `/infobip-dlr`: the body as received, checked to be JSON; the dlr job stores it as it is. */
    dlrBody: string
  }
}

/**
 * True when `value` nests objects or arrays deeper than `limit`. The recursion stops at `limit`, so
 * it is as deep as the limit at most, whatever the body.
 */
function deeperThan(value: unknown, limit: number): boolean {
  if (value === null || typeof value !== 'object') return false
  if (limit === 0) return true
  for (const key in value) if (deeperThan((value as Record<string, unknown>)[key], limit - 1)) return true
  return false
}

/** 2,000 realistic reports take about 1.5 MB; pretty-printed ones up to twice that. */
const BODY_LIMIT = 4 * 1024 * 1024

/**
 * `POST /infobip-dlr` (docs/api.md#infobip-delivery-reports): the batch, as the text Infobip sent, becomes one dlr job — one round
 * trip to Redis — before the 200, and nothing else happens here. A 503 (Redis unreachable) makes Infobip retry.
 */
const infobipDlr: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(dlrAuth)
  const queue = app.queues.dlr

  // Whatever Content-Type Infobip or a proxy puts on it, the body must be JSON: not JSON is a 400.
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.decorateRequest('dlrBody', '')
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    void parseJson(request, body as string, (error, value) => {
      if (error) return done(error)
      // Reports are a few levels deep; a body nested thousands deep could not be applied.
      if (deeperThan(value, MAX_DEPTH)) return done(new HttpError(400, `body is nested deeper than ${MAX_DEPTH} levels`, 'FST_ERR_VALIDATION'))
      request.dlrBody = body as string
      done(null, value)
    })
  })

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
      await queue.add('dlr', { body: request.dlrBody }, dlrJobOptions)
      return { received: results.length }
    },
  )
}

export default infobipDlr
