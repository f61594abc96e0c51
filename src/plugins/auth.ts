import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import { HttpError } from '../errors.js'
import { loadTenants, type Tenant, type Tenants } from '../tenants.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Every tenant and its keys (TENANTS_FILE and API_KEYS). */
    tenants: Tenants
    /** onRequest hook for routes that need `Authorization: Bearer <API key>`: sets `request.tenant`. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    /** The tenant of the request's API key: every route under /messages, /callbacks and /suppressions acts for it. */
    tenant: Tenant
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
    app.decorate('tenants', loadTenants(app.config))
    app.decorateRequest('tenant', null as unknown as Tenant)
    app.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => {
      // An address that has guessed wrong too often is refused first, the right key included (docs/operations.md#security).
      await app.authFailures.check(request, reply)
      const header = request.headers.authorization ?? ''
      const [scheme, token] = header.split(' ', 2)
      const tenant = scheme?.toLowerCase() === 'bearer' && token ? app.tenants.authenticate(token) : undefined
      if (!tenant) {
        await app.authFailures.record(request)
        throw new HttpError(401, 'Missing or invalid API key: send Authorization: Bearer <key>', 'UNAUTHORIZED')
      }
      request.tenant = tenant
      // The request's own child logger (pino's; a disabled logger has none to bind): every later line of
      // this request, the completion line included, names the tenant.
      const log = request.log as Partial<Logger>
      if (typeof log.setBindings === 'function') log.setBindings({ tenant: tenant.name })
    })
  },
  { name: 'auth', dependencies: ['auth-throttle'] },
)
