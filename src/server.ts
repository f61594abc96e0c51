// First: tracing must be set up before the modules it instruments are loaded (docs/tracing.md#how-it-starts).
import { stopTracing } from './telemetry.js'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfigOrExit, REQUIRED } from './config.js'

/** `npm start`: the API alone. Configuration errors and an unreachable Redis end it with one line. */
const config = loadConfigOrExit(process.env, REQUIRED.api)

const app = await buildApp(config).catch((error: Error) => {
  console.error(error.message)
  process.exit(1)
})

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing: finishing in-flight requests')
  await app.close()
  await stopTracing()
})

await app.listen({ port: config.PORT, host: config.HOST })
