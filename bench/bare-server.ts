import Fastify from 'fastify'

/**
 * The ceiling for the HTTP routes: Fastify with nothing of the service — no schema, hooks, logging or
 * Redis. `/echo` answers with the body it got (an answer about the size of the real routes' answers),
 * `/ack` with `{ received }` like `/infobip-dlr`.
 */
const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 })

app.post('/echo', async (request) => request.body)
app.post('/ack', async (request) => ({ received: (request.body as { results?: unknown[] }).results?.length ?? 0 }))
app.get('/health', async () => ({ status: 'ok' }))

process.once('SIGTERM', () => void app.close().then(() => process.exit(0)))
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
