// First: tracing must be set up before the modules it instruments are loaded (docs/tracing.md#how-it-starts).
import { stopTracing } from './telemetry.js'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { DEVELOPMENT_SECRETS, loadConfigOrExit, REQUIRED } from './config.js'
import { createLogger } from './logger.js'
import { buildSimulator } from './simulator/app.js'
import { startWorkers } from '../workers/start.js'

/**
 * `npm run dev`: the whole system in one process tree — the API, every worker and, unless
 * INFOBIP_BASE_URL is set, the built-in Infobip simulator — with development values for whatever
 * the environment does not set.
 */
const DEV_DEFAULTS = { ...DEVELOPMENT_SECRETS, CALLBACK_ALLOW_PRIVATE: 'true', BULL_BOARD_USER: 'admin' }

const env: NodeJS.ProcessEnv = { ...process.env }
const filled: string[] = []
for (const [key, value] of Object.entries(DEV_DEFAULTS)) {
  if (!env[key]) {
    env[key] = value
    filled.push(`${key}=${value}`)
  }
}
const useSimulator = !env.INFOBIP_BASE_URL
if (useSimulator) env.INFOBIP_BASE_URL = `http://127.0.0.1:${env.SIM_PORT ?? 3001}`
if (!env.PUBLIC_BASE_URL) env.PUBLIC_BASE_URL = `http://localhost:${env.PORT ?? 3000}`

const config = loadConfigOrExit(env, [...REQUIRED.api, ...REQUIRED.worker])

const log = createLogger(config.LOG_LEVEL)
const closers: (() => Promise<unknown>)[] = []

try {
  // The API connects first: without Redis it fails within seconds with one line saying what to do.
  const app = await buildApp(config)
  closers.unshift(() => app.close())
  if (useSimulator) {
    const simulator = buildSimulator(config, { logger: false })
    await simulator.listen({ port: config.SIM_PORT, host: '127.0.0.1' })
    closers.push(() => simulator.close())
  }
  const workers = await startWorkers(config, log.child({ name: 'worker' }))
  closers.unshift(() => workers.close())
  await app.listen({ port: config.PORT, host: config.HOST })
} catch (error) {
  console.error((error as Error).message)
  await Promise.allSettled(closers.map((close) => close()))
  process.exit(1)
}

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'stopping after an error')
  else log.info({ signal }, 'stopping')
  for (const close of closers) await close()
  await stopTracing()
})

const api = `http://localhost:${config.PORT}`
const key = config.API_KEYS!.split(',')[0]
// An opt-out tried by hand (docs/simulator.md#posting-inbound-sms): the simulator posts the STOP to
// /infobip-inbound, and the next message to that number ends REJECTED (SUPPRESSED) without being sent.
const optOutHelp = `
  Reply STOP from that number (through the simulator):
    curl -s -X POST http://127.0.0.1:${config.SIM_PORT}/_sim/inbound -H 'Content-Type: application/json' -d '{"from":"41793026727","to":"41790000000","text":"STOP"}'

  Then the next message to it ends REJECTED with error.code SUPPRESSED, never sent:
    curl -s -X POST ${api}/messages -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"to":"+41 79 302 67 27","text":"Still there?"}'
`
// eslint-disable-next-line no-console -- the one thing `npm run dev` is for: telling where everything is
console.log(`
  SMS delivery service (development)

  API         ${api}
  Docs        ${api}/docs
  Dashboard   ${api}/admin/queues  (user ${config.BULL_BOARD_USER ?? '—'}, password in BULL_BOARD_PASSWORD)
  Metrics     ${api}/metrics
  Infobip     ${useSimulator ? `built-in simulator at ${config.INFOBIP_BASE_URL}` : config.INFOBIP_BASE_URL}
${filled.length > 0 ? `\n  Development values (set these variables to override):\n${filled.map((f) => `    ${f}`).join('\n')}\n` : ''}
  Send a message:
    curl -s -X POST ${api}/messages -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"to":"+41 79 302 67 27","text":"Hello from the SMS service"}'

  Then ask where it is (use the id from the answer):
    curl -s ${api}/messages/<id> -H 'Authorization: Bearer ${key}'
${useSimulator ? optOutHelp : ''}`)
