import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { listOf } from '../config.js'
import { HttpError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook for routes that need `Authorization: Bearer <one of API_KEYS>`. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    /** A stable, non-secret name of the API key used: the namespace of its idempotency keys. */
    apiKeyScope: string
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Compares a presented secret with the accepted ones in constant time: both sides are hashed to
 * the same length first, and every candidate is compared.
 */
export function matchSecret(presented: string, accepted: Buffer[]): number {
  const candidate = digest(presented)
  let match = -1
  accepted.forEach((secret, i) => {
    if (timingSafeEqual(candidate, secret)) match = i
  })
  return match
}

export default fp(
  async function authPlugin(app) {
    const { config } = app
    const keys = listOf(config.API_KEYS).map(digest)
    const scopes = keys.map((k) => k.toString('base64url').slice(0, 16))
    app.decorateRequest('apiKeyScope', '')
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization ?? ''
      const [scheme, token] = header.split(' ', 2)
      const match = scheme?.toLowerCase() === 'bearer' && token ? matchSecret(token, keys) : -1
      if (match < 0) throw new HttpError(401, 'Missing or invalid API key: send Authorization: Bearer <key>', 'UNAUTHORIZED')
      request.apiKeyScope = scopes[match]!
    })
  },
  { name: 'auth' },
)
