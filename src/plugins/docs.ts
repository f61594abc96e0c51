import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

/**
 * The OpenAPI document at `/docs/json`, generated from the route schemas, and Swagger UI at `/docs`.
 * Registered before the routes so that it sees them all.
 */
export default fp(
  async function docsPlugin(app) {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'SMS delivery service',
          description: 'Send SMS through Infobip and track what happened to each message.',
          version: '1.0.0',
        },
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key of a tenant (API_KEYS, TENANTS_FILE)' },
            dlrToken: { type: 'apiKey', in: 'query', name: 'token', description: 'DLR_WEBHOOK_TOKEN (also as X-Webhook-Token or the Basic auth password)' },
          },
        },
        tags: [
          { name: 'messages', description: 'Send SMS, follow and cancel them' },
          { name: 'suppressions', description: 'The opt-out list: numbers that receive no SMS' },
          { name: 'infobip', description: 'Called by Infobip' },
          { name: 'operations', description: 'Health, readiness, metrics' },
        ],
      },
    })
    await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true })
  },
  { name: 'docs' },
)
