import { createHash } from 'node:crypto'
import { BlockList, isIP } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { subnetsOf } from '../config.js'
import { HttpError } from '../errors.js'
import { matchSecret } from './auth.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * onRequest hook of the routes Infobip calls (`/infobip-dlr`, `/infobip-inbound`): DLR_ALLOWED_IPS
     * (403), then the failed-authentication throttle (429), then DLR_WEBHOOK_TOKEN (401).
     */
    authenticateInfobip: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

/**
 * Infobip can carry a secret only in the URL, in a static header of a subscription profile, or as
 * HTTP Basic credentials (docs/infobip.md#webhook-security), so the token is accepted in any of the three places.
 */
export default fp(
  async function dlrAuthPlugin(app) {
    const { config } = app
    const token = config.DLR_WEBHOOK_TOKEN ? [createHash('sha256').update(config.DLR_WEBHOOK_TOKEN).digest()] : []
    const allowed = allowList(config.DLR_ALLOWED_IPS)
    app.decorate('authenticateInfobip', async (request: FastifyRequest, reply: FastifyReply) => {
      if (allowed && !allowed.check(request.ip, isIP(request.ip) === 6 ? 'ipv6' : 'ipv4')) {
        throw new HttpError(403, 'Source address not allowed (DLR_ALLOWED_IPS)', 'FORBIDDEN')
      }
      await app.authFailures.check(request, reply)
      // Every form is compared, each in constant time: which one was used is not a secret.
      if (!presentedTokens(request).some((presented) => matchSecret(presented, token) >= 0)) {
        await app.authFailures.record(request)
        throw new HttpError(401, 'Missing or invalid webhook token: send ?token=, X-Webhook-Token or HTTP Basic', 'UNAUTHORIZED')
      }
    })
  },
  { name: 'dlr-auth', dependencies: ['auth-throttle'] },
)

function presentedTokens(request: FastifyRequest): string[] {
  const { token } = request.query as { token?: unknown }
  const header = request.headers['x-webhook-token']
  const [scheme, credentials] = (request.headers.authorization ?? '').split(' ', 2)
  const basic = scheme?.toLowerCase() === 'basic' && credentials ? Buffer.from(credentials, 'base64').toString() : ''
  const password = basic.includes(':') ? basic.slice(basic.indexOf(':') + 1) : ''
  return [token, header, password].filter((t): t is string => typeof t === 'string' && t !== '')
}

/** `10.0.0.0/8, 2001:db8::/32, 203.0.113.7` → a BlockList used as an allow-list; undefined = any source. */
function allowList(value: string | undefined): BlockList | undefined {
  const subnets = subnetsOf(value, 'DLR_ALLOWED_IPS', 'comma-separated IP addresses or CIDRs')
  if (subnets.length === 0) return undefined
  const list = new BlockList()
  for (const { address, prefix, family } of subnets) list.addSubnet(address, prefix, family)
  return list
}
