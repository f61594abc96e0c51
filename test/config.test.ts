import { readFileSync } from 'node:fs'
import t from 'tap'
import { ConfigSchema, DEVELOPMENT_SECRETS, loadConfig, REQUIRED } from '../src/config.js'

t.test('defaults, and values converted from strings', async (t) => {
  const config = loadConfig({ PORT: '3005', TRUST_PROXY: '10.0.0.1, 10.1.0.0/16', SIM_FAILURE_RATE: '0.3' })
  t.match(config, {
    PORT: 3005,
    TRUST_PROXY: '10.0.0.1, 10.1.0.0/16',
    SIM_FAILURE_RATE: 0.3,
    KEY_PREFIX: 'sms',
    INFOBIP_API: 'v3',
    SEND_MAX_ATTEMPTS: 8,
    MESSAGE_TTL_DAYS: 30,
  })
  // TRUST_PROXY stays text: buildApp reads false, true or the proxies' addresses from it (test/routes/edge.test.ts).
  t.equal(loadConfig({}).TRUST_PROXY, 'false')
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY, 'true')
})

t.test('a bad or missing variable stops start-up with one line naming it', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'abc' }, /^Invalid configuration: PORT expected integer \(got "abc"\)$/],
    [{ INFOBIP_API: 'v4' }, /^Invalid configuration: INFOBIP_API must be one of v3, v2/],
    [{ REDIS_URL: 'localhost:6379' }, /^Invalid configuration: REDIS_URL /],
    [{ SEND_MAX_ATTEMPTS: '0' }, /^Invalid configuration: SEND_MAX_ATTEMPTS /],
    [{ WORKER_QUEUES: 'send,emails' }, /^Invalid configuration: WORKER_QUEUES /],
  ]
  for (const [env, message] of cases) t.throws(() => loadConfig(env), { name: 'ConfigError', message })
  t.throws(() => loadConfig({ API_KEYS: 'k' }, REQUIRED.api), { message: /DLR_WEBHOOK_TOKEN is required/ })
  // The API's keys come from API_KEYS or TENANTS_FILE: test/tenants.test.ts.
})

t.test('NODE_ENV=production refuses the development values of npm run dev, and short API keys', async (t) => {
  const production = { NODE_ENV: 'production', API_KEYS: 'a-production-key-0123456789' }
  t.ok(loadConfig(production), 'real values pass')
  for (const [key, value] of Object.entries(DEVELOPMENT_SECRETS)) {
    const env = { ...production, [key]: key === 'API_KEYS' ? `a-production-key-0123456789,${value}` : value }
    t.throws(
      () => loadConfig(env),
      { message: `Invalid configuration: ${key} has the development value of npm run dev, which is refused with NODE_ENV=production` },
      key,
    )
    t.ok(loadConfig({ ...env, NODE_ENV: 'development' }), `${key} is fine in development`)
  }
  t.throws(() => loadConfig({ ...production, API_KEYS: 'short-key' }), { message: /API_KEYS must each be at least 16 characters with NODE_ENV=production/ })
})

t.test('secrets never appear in the error', async (t) => {
  for (const [name, value] of [
    ['DLR_WEBHOOK_TOKEN', 'short-secret'],
    ['CALLBACK_SIGNING_SECRET', 'plain-secret'],
    ['REDIS_URL', 'mysecret@redis'],
  ]) {
    const error = t.throws(() => loadConfig({ [name!]: value! })) as Error
    t.match(error.message, new RegExp(`^Invalid configuration: ${name}`))
    t.notOk(error.message.includes(value!), `${name} value not echoed`)
  }
})

t.test('.env.example documents every variable of the schema', async (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')
  const documented = new Set([...example.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]))
  for (const key of Object.keys(ConfigSchema.properties)) t.ok(documented.has(key), `${key} is in .env.example`)
  for (const key of documented) t.ok(key! in ConfigSchema.properties, `${key} in .env.example exists`)
})
