import { MAX_PARTITIONS } from './shards.js'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { isIP } from 'node:net'

/**
 * The whole environment of every process (API, workers, simulator), validated once at start-up.
 * Only this file reads `process.env`; everything else receives a `Config`.
 */
const Int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => Type.Integer({ default: def, minimum: min, maximum: max })
/** Comma-separated single words: each is compared with the first word of an inbound SMS. */
const KEYWORD_LIST = '^\\s*[^\\s,]+\\s*(,\\s*[^\\s,]+\\s*)*$'
/** Comma-separated `host:port` (an IPv6 host in brackets): sentinels, cluster nodes. */
const HOST_PORT = '\\s*(\\[[0-9A-Fa-f:.]+\\]|[^\\s,:\\[\\]]+):[0-9]{1,5}\\s*'
const HOST_PORT_LIST = `^${HOST_PORT}(,${HOST_PORT})*$`

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  PORT: Int(3000, 0, 65535),
  HOST: Type.String({ default: '0.0.0.0' }),
  REDIS_URL: Type.String({ default: 'redis://127.0.0.1:6379', pattern: '^rediss?://' }),
  /** Sentinel mode (docs/operations.md#redis-deployments): the sentinels, and the name of the master they watch. */
  REDIS_SENTINELS: Type.Optional(Type.String({ pattern: HOST_PORT_LIST })),
  REDIS_SENTINEL_NAME: Type.Optional(Type.String({ minLength: 1 })),
  /** Cluster mode (docs/operations.md#redis-deployments): some of the cluster's nodes. */
  REDIS_CLUSTER_NODES: Type.Optional(Type.String({ pattern: HOST_PORT_LIST })),
  /** Credentials and TLS of the Sentinel (and Cluster) nodes; REDIS_URL carries its own. */
  REDIS_USERNAME: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_TLS: Type.Boolean({ default: false }),
  /** When > 0, an answer that acknowledges a write waits for that many replicas to have it (src/durability.ts). */
  REDIS_MIN_REPLICAS: Int(0, 0, 100),
  REDIS_WAIT_TIMEOUT_MS: Int(500, 1, 60_000),
  /** Shards of the store and partitions of every queue (src/shards.ts): may be raised, never lowered. */
  QUEUE_PARTITIONS: Int(1, 1, MAX_PARTITIONS),
  KEY_PREFIX: Type.String({ default: 'sms', pattern: '^[A-Za-z0-9_.:-]+$' }),
  API_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  TENANTS_FILE: Type.Optional(Type.String({ minLength: 1 })),
  INFOBIP_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  INFOBIP_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  INFOBIP_SENDER: Type.String({ default: 'InfoSMS', minLength: 1 }),
  INFOBIP_API: Type.Union([Type.Literal('v3'), Type.Literal('v2')], { default: 'v3' }),
  PUBLIC_BASE_URL: Type.String({ default: 'http://localhost:3000', pattern: '^https?://' }),
  DLR_WEBHOOK_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  DLR_ALLOWED_IPS: Type.Optional(Type.String()),
  /** `false`, `true`, or the trusted proxies' addresses/CIDRs, comma-separated (docs/configuration.md). */
  TRUST_PROXY: Type.String({ default: 'false', minLength: 1 }),
  SEND_MAX_ATTEMPTS: Int(8, 1, 100),
  SEND_BACKOFF_MS: Int(1000, 1),
  SEND_CONCURRENCY: Int(50, 1, 10_000),
  SEND_RATE_LIMIT_PER_SECOND: Int(0, 0),
  INFOBIP_TIMEOUT_MS: Int(10_000, 1),
  DLR_CONCURRENCY: Int(4, 1, 1000),
  CALLBACK_CONCURRENCY: Int(50, 1, 10_000),
  JOB_LOCK_MS: Int(30_000, 1000),
  CALLBACK_SIGNING_SECRET: Type.Optional(Type.String({ pattern: '^whsec_' })),
  RATE_LIMIT_PER_MINUTE: Int(6000, 1),
  AUTH_FAILURES_PER_MINUTE: Int(20, 1),
  CALLBACK_ALLOW_PRIVATE: Type.Boolean({ default: false }),
  CALLBACK_MAX_ATTEMPTS: Int(14, 1, 100),
  CALLBACK_BACKOFF_MS: Int(15_000, 1),
  RECONCILE_INTERVAL_SECONDS: Int(300, 1),
  RECONCILE_AFTER_SECONDS: Int(900, 1),
  MESSAGE_TTL_DAYS: Int(30, 1, 3650),
  BULL_BOARD_USER: Type.Optional(Type.String({ minLength: 1 })),
  BULL_BOARD_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  BULL_BOARD_READ_ONLY: Type.Boolean({ default: true }),
  WORKER_QUEUES: Type.String({
    default: 'send,dlr,callback,outbox,reconcile,inbound',
    pattern: '^(send|dlr|callback|outbox|reconcile|inbound)(,(send|dlr|callback|outbox|reconcile|inbound))*$',
  }),
  /** First words of an inbound SMS that suppress its sender, or lift that (docs/api.md#infobip-inbound-sms). */
  OPT_OUT_KEYWORDS: Type.String({ default: 'STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT', pattern: KEYWORD_LIST }),
  OPT_IN_KEYWORDS: Type.String({ default: 'START,UNSTOP', pattern: KEYWORD_LIST }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  SIM_PORT: Int(3001, 0, 65535),
  SIM_LATENCY_MS: Int(0, 0),
  SIM_DLR_DELAY_MS: Int(200, 0),
  SIM_FAILURE_RATE: Type.Number({ default: 0, minimum: 0, maximum: 1 }),
  SIM_RATE_LIMIT_PER_SECOND: Int(0, 0),
  SIM_LOGS_LAG_MS: Int(0, 0),
})

export type Config = Static<typeof ConfigSchema>
export type ConfigKey = keyof Config

/** What each kind of process cannot run without (the API needs API_KEYS or TENANTS_FILE: see tenants.ts). */
export const REQUIRED = {
  api: ['DLR_WEBHOOK_TOKEN'],
  worker: ['INFOBIP_BASE_URL', 'INFOBIP_API_KEY', 'DLR_WEBHOOK_TOKEN'],
  simulator: ['INFOBIP_API_KEY'],
} as const satisfies Record<string, readonly ConfigKey[]>

/**
 * The secrets `npm run dev` fills in when the environment does not set them. With NODE_ENV=production
 * they are refused: they are printed on every developer's screen and written in the README.
 */
export const DEVELOPMENT_SECRETS = {
  API_KEYS: 'dev-api-key',
  DLR_WEBHOOK_TOKEN: 'dev-dlr-token-change-me',
  INFOBIP_API_KEY: 'dev-infobip-key',
  CALLBACK_SIGNING_SECRET: 'whsec_ZGV2LWNhbGxiYWNrLXNlY3JldC1rZXktMDEyMzQ1Njc=',
  BULL_BOARD_PASSWORD: 'admin',
} as const satisfies Partial<Record<ConfigKey, string>>

/** Variables whose values never appear in an error or a log line. */
const SECRETS = new Set(['API_KEYS', 'INFOBIP_API_KEY', 'DLR_WEBHOOK_TOKEN', 'CALLBACK_SIGNING_SECRET', 'BULL_BOARD_PASSWORD', 'REDIS_URL', 'REDIS_PASSWORD'])

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Validates `env` against the schema. Throws a `ConfigError` whose message is one line naming the
 * first bad variable; entry points print it and exit.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, required: readonly ConfigKey[] = []): Config {
  const known: Record<string, unknown> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key]
    if (value !== undefined && value !== '') known[key] = value
  }
  const candidate = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, known))
  const error = Value.Errors(ConfigSchema, candidate).First()
  if (error) {
    const name = error.path.replace(/^\//, '') || 'environment'
    const allowed = error.schema.anyOf as { const: string }[] | undefined
    const expected = allowed ? `must be one of ${allowed.map((s) => s.const).join(', ')}` : error.message.toLowerCase()
    const got = SECRETS.has(name) ? '' : ` (got ${JSON.stringify(known[name] ?? null)})`
    throw new ConfigError(`Invalid configuration: ${name} ${expected}${got}`)
  }
  const config = candidate as Config
  if (config.REDIS_SENTINELS !== undefined && config.REDIS_SENTINEL_NAME === undefined)
    throw new ConfigError('Invalid configuration: REDIS_SENTINEL_NAME is required with REDIS_SENTINELS (the name of the master the sentinels watch)')
  if (config.NODE_ENV === 'production') refuseDevelopmentValues(config)
  for (const key of required) {
    if (config[key] === undefined) throw new ConfigError(`Invalid configuration: ${key} is required (see .env.example)`)
  }
  return config
}

function refuseDevelopmentValues(config: Config): void {
  for (const [key, value] of Object.entries(DEVELOPMENT_SECRETS) as [keyof typeof DEVELOPMENT_SECRETS, string][]) {
    const set = key === 'API_KEYS' ? listOf(config.API_KEYS) : [config[key]]
    if (set.includes(value))
      throw new ConfigError(`Invalid configuration: ${key} has the development value of npm run dev, which is refused with NODE_ENV=production`)
  }
  const short = listOf(config.API_KEYS).some((k) => k.length < 16)
  if (short) throw new ConfigError('Invalid configuration: API_KEYS must each be at least 16 characters with NODE_ENV=production')
}

/** For entry points: the config, or the one-line reason on stderr and exit code 1. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv, required: readonly ConfigKey[]): Config {
  try {
    return loadConfig(env, required)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    console.error(error.message)
    process.exit(1)
  }
}

export const listOf = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

export interface Subnet {
  /** As written: an address, or an address and `/bits`. */
  entry: string
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/**
 * A comma-separated list of IP addresses and CIDRs (`10.0.0.0/8, 2001:db8::/32, 203.0.113.7`); an
 * entry that is neither throws a ConfigError naming `variable` and saying what it `must` be.
 */
export function subnetsOf(value: string | undefined, variable: string, must: string): Subnet[] {
  return listOf(value).map((entry) => {
    const [address = '', bits, ...extra] = entry.split('/')
    const family = isIP(address)
    const max = family === 6 ? 128 : 32
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
    if (family === 0 || !(prefix <= max) || extra.length > 0) {
      throw new ConfigError(`Invalid configuration: ${variable} must be ${must} (got ${JSON.stringify(entry)})`)
    }
    return { entry, address, prefix, family: family === 6 ? 'ipv6' : 'ipv4' }
  })
}

/** The URL Infobip posts delivery reports to; the token travels in the query string. */
export const dlrUrl = (config: Config): string =>
  `${config.PUBLIC_BASE_URL.replace(/\/$/, '')}/infobip-dlr?token=${encodeURIComponent(config.DLR_WEBHOOK_TOKEN ?? '')}`

/** The URL to give Infobip for inbound SMS (docs/infobip.md#inbound-messages), with the same token. */
export const inboundUrl = (config: Config): string =>
  `${config.PUBLIC_BASE_URL.replace(/\/$/, '')}/infobip-inbound?token=${encodeURIComponent(config.DLR_WEBHOOK_TOKEN ?? '')}`
