// First: tracing must be set up before the modules it instruments are loaded (docs/tracing.md#how-it-starts).
import { stopTracing } from '../src/telemetry.js'
import closeWithGrace from 'close-with-grace'
import { loadConfigOrExit, REQUIRED } from '../src/config.js'
import { createLogger } from '../src/logger.js'
import { startWorkers, type Running } from './start.js'

/** `npm run worker`: the workers named in WORKER_QUEUES, until SIGTERM or SIGINT. */
async function main() {
  const config = loadConfigOrExit(process.env, REQUIRED.worker)
  const log = createLogger(config.LOG_LEVEL, 'worker')
  let running: Running
  try {
    running = await startWorkers(config, log)
  } catch (error) {
    console.error((error as Error).message)
    process.exit(1)
  }
  closeWithGrace({ delay: 30_000 }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'closing workers after an error')
    else log.info({ signal }, 'closing workers: finishing active jobs')
    await running.close()
    await stopTracing()
  })
}

await main()
