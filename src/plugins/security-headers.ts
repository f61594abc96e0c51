import fastifyHelmet from '@fastify/helmet'
import fp from 'fastify-plugin'
import helmet from 'helmet'
import type { ServerResponse } from 'node:http'

/** The headers helmet's middleware sets with its default configuration, recorded once. */
function helmetHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader: (name: string, value: string | number) => (headers[name.toLowerCase()] = String(value)),
    removeHeader: () => {},
  } as unknown as ServerResponse
  helmet()({} as never, recorder, () => {})
  return headers
}

/**
 * Helmet's security headers on every route (docs/api.md#security-headers). `@fastify/helmet` builds helmet's middleware
 * anew for every request, which took 7% of the API's CPU under load; with no per-request option
 * (no CSP nonces) the headers depend only on the configuration, so they are recorded once and set
 * with `reply.headers()`. Routes with their own helmet configuration (the dashboard's CSP) still
 * go through `@fastify/helmet`, registered here for those alone.
 */
export default fp(
  async function securityHeaders(app) {
    const headers = helmetHeaders()
    await app.register(fastifyHelmet, { global: false })
    app.addHook('onRequest', (request, reply, done) => {
      if ((request.routeOptions.config as { helmet?: unknown }).helmet === undefined) reply.headers(headers)
      done()
    })
  },
  { name: 'security-headers' },
)
