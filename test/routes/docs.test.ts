import t from 'tap'
import { buildTestApp, testConfig } from '../helpers/index.js'

const app = await buildTestApp(t, testConfig('docs'))

t.test('/docs/json documents every route, with an example for every body', async (t) => {
  const res = await app.inject({ url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json<{
    openapi: string
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { example?: unknown; examples?: unknown }> } }>>
  }>()
  t.match(doc.openapi, /^3\./)
  const documented = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
  const routes = ['POST /messages', 'POST /messages/batch', 'GET /messages/{id}', 'GET /messages', 'POST /messages/{id}/cancel', 'POST /messages/cancel']
  routes.push('POST /callbacks/{eventId}/replay', 'PUT /suppressions/{to}', 'GET /suppressions/{to}', 'DELETE /suppressions/{to}', 'GET /suppressions')
  routes.push('POST /infobip-dlr', 'POST /infobip-inbound', 'GET /health', 'GET /ready')
  for (const expected of routes) {
    t.ok(documented.includes(expected), `${expected} is documented`)
  }
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const content = operation.requestBody?.content['application/json']
      if (content) t.ok(content.example ?? content.examples, `${method.toUpperCase()} ${path} has a body example`)
    }
  }
})

t.test('Swagger UI at /docs', async (t) => {
  const res = await app.inject({ url: '/docs/' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
  t.match(res.body, /swagger/i)
})

t.test('security headers on API routes', async (t) => {
  const res = await app.inject({ url: '/health' })
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.ok(res.headers['content-security-policy'])
  t.ok(res.headers['strict-transport-security'])
})
