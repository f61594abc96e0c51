import type { FastifyBodyParser, FastifyInstance } from 'fastify'
import { HttpError } from './errors.js'

/** The deepest nesting a JSON body may have; real ones (messages, Infobip reports) nest four levels at most. */
export const MAX_JSON_DEPTH = 32

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d

/**
 * True when the JSON text opens more than `limit` objects or arrays inside each other. One pass over
 * the text that stops at the first bracket too deep; brackets inside string literals (escapes
 * included) are not counted. Text that is not JSON gets some answer here and is refused by the parser.
 */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) inString = true
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > limit) return true
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--
  }
  return false
}

/**
 * `parse` (Fastify's own JSON parser, with its protection against `__proto__` and `constructor`
 * poisoning) behind the depth check: JSON.parse of a body nested a million deep blocks the event
 * loop for a second, so such a body is refused before it is parsed (docs/api.md#errors).
 */
export function depthLimitedJsonParser(parse: FastifyBodyParser<string>): FastifyBodyParser<string> {
  return (request, body, done) => {
    if (nestedDeeperThan(body, MAX_JSON_DEPTH)) {
      return done(new HttpError(400, `body is nested deeper than ${MAX_JSON_DEPTH} levels`, 'FST_ERR_VALIDATION'), undefined)
    }
    return parse(request, body, done)
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** On the routes Infobip calls: the body as received, checked to be JSON; their jobs store it as it is. */
    rawBody: string
  }
}

/**
 * For the routes Infobip calls (`/infobip-dlr`, `/infobip-inbound`), in their own scope: whatever
 * Content-Type Infobip or a proxy puts on it, the body must be JSON — not JSON, or nested deeper than
 * the API's other JSON routes allow, is a 400 — and its text is kept as `request.rawBody`, so that the
 * job stores it without serialising it again.
 */
export function parseAnyBodyAsJson(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  const parseJson = depthLimitedJsonParser(app.getDefaultJsonParser('error', 'error'))
  app.decorateRequest('rawBody', '')
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    void parseJson(request, body as string, (error, value) => {
      if (error) return done(error)
      request.rawBody = body as string
      done(null, value)
    })
  })
}
