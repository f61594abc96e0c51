import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ConfigError, listOf, type Config } from './config.js'

/**
 * The client teams that share one deployment (docs/tenants.md). Each API key belongs to one tenant;
 * what a tenant owns (its messages and their indexes, idempotency keys, rate limit, callback
 * signing) is keyed by its name, so two keys of one tenant share all of it.
 */
export interface Tenant {
  name: string
  rateLimitPerMinute?: number
  defaultSender?: string
  allowedSenders?: string[]
  inboundNumbers?: string[]
  callbackSigningSecret?: string
}

/** The tenant of `API_KEYS`, and of records written before tenants existed. */
export const DEFAULT_TENANT = 'default'

const NAME = /^[a-z0-9-]{1,32}$/
const HASHED_KEY = /^sha256:[0-9a-f]{64}$/
export const MIN_KEY_LENGTH = 16
/** The rule of a message's `from`: 1–11 alphanumerics (spaces allowed) or up to 15 digits. */
export const SENDER = /^(?:[A-Za-z0-9 ]{1,11}|\+?[0-9]{1,15})$/
const SIGNING_SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/
const FIELDS = new Set(['apiKeys', 'rateLimitPerMinute', 'defaultSender', 'allowedSenders', 'inboundNumbers', 'callbackSigningSecret'])

const sha256 = (value: string) => createHash('sha256').update(value).digest()

export class Tenants {
  readonly #byName: Map<string, Tenant>
  /** Every key's SHA-256, and whose it is. */
  readonly #keys: { digest: Buffer; tenant: Tenant }[]

  constructor(entries: { tenant: Tenant; keyDigests: Buffer[] }[]) {
    this.#byName = new Map(entries.map((e) => [e.tenant.name, e.tenant]))
    this.#keys = entries.flatMap((e) => e.keyDigests.map((digest) => ({ digest, tenant: e.tenant })))
  }

  /**
   * The tenant of a presented API key. Compared in constant time: the key is hashed to the length of
   * the stored digests, and every digest is compared, whichever matches.
   */
  authenticate(presented: string): Tenant | undefined {
    const candidate = sha256(presented)
    let match: Tenant | undefined
    for (const key of this.#keys) if (timingSafeEqual(candidate, key.digest)) match = key.tenant
    return match
  }

  get(name: string): Tenant | undefined {
    return this.#byName.get(name)
  }

  get names(): string[] {
    return [...this.#byName.keys()]
  }

  /** The names, and `default`'s, whose data exists from before a TENANTS_FILE (docs/tenants.md). */
  get withDefault(): string[] {
    return [...new Set([DEFAULT_TENANT, ...this.names])]
  }

  get all(): Tenant[] {
    return [...this.#byName.values()]
  }
}

/**
 * The tenants of `TENANTS_FILE` and, as tenant `default`, the keys of `API_KEYS`. Any mistake throws
 * a ConfigError of one line naming the tenant and the field; a key is never part of the message.
 * The API needs at least one key; workers only read the tenants' settings (`requireKeys: false`).
 */
export function loadTenants(config: Pick<Config, 'TENANTS_FILE' | 'API_KEYS'> & Partial<Pick<Config, 'INFOBIP_SENDER'>>, { requireKeys = true } = {}): Tenants {
  const entries = new Map<string, { tenant: Tenant; keyDigests: Buffer[] }>()
  if (config.TENANTS_FILE) {
    let file: unknown
    try {
      file = JSON.parse(readFileSync(config.TENANTS_FILE, 'utf8'))
    } catch (error) {
      throw new ConfigError(`Invalid tenants file: TENANTS_FILE ${config.TENANTS_FILE} cannot be read as JSON (${(error as Error).message.split('\n')[0]})`)
    }
    for (const [name, value] of Object.entries(tenantsOf(file))) entries.set(name, parseTenant(name, value, config.INFOBIP_SENDER))
  }
  const apiKeys = listOf(config.API_KEYS)
  if (apiKeys.length > 0) {
    const entry = entries.get(DEFAULT_TENANT) ?? { tenant: { name: DEFAULT_TENANT }, keyDigests: [] }
    entry.keyDigests.push(...apiKeys.map(sha256))
    entries.set(DEFAULT_TENANT, entry)
  }
  if (entries.size === 0) {
    if (requireKeys) throw new ConfigError('Invalid configuration: API_KEYS or TENANTS_FILE is required (see .env.example)')
    entries.set(DEFAULT_TENANT, { tenant: { name: DEFAULT_TENANT }, keyDigests: [] })
  }

  const owner = new Map<string, string>()
  for (const { tenant, keyDigests } of entries.values()) {
    for (const digest of keyDigests) {
      const other = owner.get(digest.toString('hex'))
      if (other !== undefined) {
        const where = other === tenant.name ? `twice in tenant ${tenant.name}` : `in tenants ${other} and ${tenant.name}`
        throw new ConfigError(`Invalid tenants file: tenant ${tenant.name}: apiKeys has a key that is ${where}; a key belongs to one tenant`)
      }
      owner.set(digest.toString('hex'), tenant.name)
    }
  }
  return new Tenants([...entries.values()])
}

function tenantsOf(file: unknown): Record<string, unknown> {
  const fail = (what: string) => new ConfigError(`Invalid tenants file: ${what}`)
  if (!isObject(file)) throw fail('must be a JSON object { "tenants": { … } }')
  const extra = Object.keys(file).find((k) => k !== 'tenants')
  if (extra !== undefined) throw fail(`${extra} is not allowed (only "tenants")`)
  if (!isObject(file.tenants)) throw fail('tenants must be an object of tenant name → settings')
  return file.tenants
}

function parseTenant(name: string, value: unknown, globalSender: string | undefined): { tenant: Tenant; keyDigests: Buffer[] } {
  const fail = (field: string, problem: string) => new ConfigError(`Invalid tenants file: tenant ${JSON.stringify(name)}: ${field} ${problem}`)
  if (!NAME.test(name)) throw fail('name', 'must be 1–32 characters of a-z, 0-9 and -')
  if (!isObject(value)) throw fail('settings', 'must be an object')
  const unknown = Object.keys(value).find((k) => !FIELDS.has(k))
  if (unknown !== undefined) throw fail(unknown, 'is not a known field')

  const { apiKeys, rateLimitPerMinute, defaultSender, allowedSenders, inboundNumbers, callbackSigningSecret } = value
  if (!Array.isArray(apiKeys) || apiKeys.length === 0) throw fail('apiKeys', 'must be a non-empty array of keys')
  const keyDigests = apiKeys.map((key: unknown, i) => {
    if (typeof key !== 'string') throw fail(`apiKeys/${i}`, 'must be a string')
    if (key.startsWith('sha256:')) {
      if (!HASHED_KEY.test(key)) throw fail(`apiKeys/${i}`, 'must be sha256: and 64 lowercase hex digits')
      return Buffer.from(key.slice('sha256:'.length), 'hex')
    }
    if (key.length < MIN_KEY_LENGTH) throw fail(`apiKeys/${i}`, `must be at least ${MIN_KEY_LENGTH} characters (or sha256:<hex>)`)
    return sha256(key)
  })

  const tenant: Tenant = { name }
  if (rateLimitPerMinute !== undefined) {
    if (!Number.isInteger(rateLimitPerMinute) || (rateLimitPerMinute as number) < 1) throw fail('rateLimitPerMinute', 'must be a positive integer')
    tenant.rateLimitPerMinute = rateLimitPerMinute as number
  }
  if (allowedSenders !== undefined)
    tenant.allowedSenders = stringList(allowedSenders, 'allowedSenders', (s) => SENDER.test(s), 'a sender (1–11 alphanumerics or up to 15 digits)', fail)
  if (defaultSender !== undefined) {
    if (typeof defaultSender !== 'string' || !SENDER.test(defaultSender)) throw fail('defaultSender', 'must be 1–11 alphanumerics or up to 15 digits')
    if (tenant.allowedSenders && !tenant.allowedSenders.includes(defaultSender)) throw fail('defaultSender', 'must be one of allowedSenders')
    tenant.defaultSender = defaultSender
  }
  // A message without `from` is sent from the tenant's defaultSender, else INFOBIP_SENDER: it must be allowed.
  if (tenant.allowedSenders && !tenant.defaultSender && globalSender !== undefined && !tenant.allowedSenders.includes(globalSender)) {
    throw fail('defaultSender', `is required: allowedSenders does not include INFOBIP_SENDER (${globalSender})`)
  }
  if (inboundNumbers !== undefined)
    tenant.inboundNumbers = stringList(inboundNumbers, 'inboundNumbers', (s) => /^\d{3,15}$/.test(s), 'digits only (3–15)', fail)
  if (callbackSigningSecret !== undefined) {
    if (
      typeof callbackSigningSecret !== 'string' ||
      !SIGNING_SECRET.test(callbackSigningSecret) ||
      Buffer.from(callbackSigningSecret.slice(6), 'base64').length < 24
    ) {
      throw fail('callbackSigningSecret', 'must be whsec_ and the base64 of at least 24 random bytes')
    }
    tenant.callbackSigningSecret = callbackSigningSecret
  }
  return { tenant, keyDigests }
}

function stringList(value: unknown, field: string, valid: (s: string) => boolean, what: string, fail: (field: string, problem: string) => Error): string[] {
  if (!Array.isArray(value)) throw fail(field, 'must be an array')
  return value.map((item: unknown, i) => {
    if (typeof item !== 'string' || !valid(item)) throw fail(`${field}/${i}`, `must be ${what}`)
    return item
  })
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
