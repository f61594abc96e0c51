import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig, REQUIRED, type Config } from '../config.js'
import { buildSimulator } from './app.js'

/** `npm run simulator`: the Infobip simulator alone, on SIM_PORT. */

function configOrExit(): Config {
  try {
    return loadConfig(process.env, REQUIRED.simulator)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    process.exit(1)
  }
}

const config = configOrExit()
const app = buildSimulator(config, { logger: { level: config.LOG_LEVEL } })

closeWithGrace({ delay: 10_000 }, async ({ err, signal }) => {
  if (err) app.log.error({ err }, 'closing the simulator after an error')
  else app.log.info({ signal }, 'closing the simulator')
  await app.close()
})

await app.listen({ port: config.SIM_PORT, host: config.HOST })
