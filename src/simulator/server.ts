import closeWithGrace from 'close-with-grace'
import { loadConfigOrExit, REQUIRED } from '../config.js'
import { buildSimulator } from './app.js'

/** `npm run simulator`: the Infobip simulator alone, on SIM_PORT. */

const config = loadConfigOrExit(process.env, REQUIRED.simulator)
const app = buildSimulator(config, { logger: { level: config.LOG_LEVEL } })

closeWithGrace({ delay: 10_000 }, async ({ err, signal }) => {
  if (err) app.log.error({ err }, 'closing the simulator after an error')
  else app.log.info({ signal }, 'closing the simulator')
  await app.close()
})

await app.listen({ port: config.SIM_PORT, host: config.HOST })
