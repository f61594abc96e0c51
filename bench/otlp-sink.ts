import { createServer } from 'node:http'

/**
 * Stands in for an OpenTelemetry collector in the tracing runs of `npm run bench`: takes every
 * OTLP/HTTP export (protobuf, the SDK's default), reads it whole and answers 200, counting requests
 * and bytes. `GET /stats` tells them. A process of its own, so that receiving costs the service's
 * processes and the load generator nothing.
 */
const stats = { requests: 0, bytes: 0 }

const server = createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/stats')
    return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats))
  request.on('data', (chunk: Buffer) => (stats.bytes += chunk.length))
  request.on('end', () => {
    stats.requests++
    response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
  })
})

process.once('SIGTERM', () => server.close(() => process.exit(0)))
server.listen(Number(process.env.PORT), '127.0.0.1')
