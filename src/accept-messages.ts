import { createHash, randomFillSync } from 'node:crypto'
import { monotonicFactory } from 'ulid'
import { callbackUrlProblem } from './callback-url.js'
import type { Config } from './config.js'
import { normalizePhone } from './domain/phone.js'
import { analyzeText, MAX_SEGMENTS } from './domain/segments.js'
import { ReplicasUnavailable } from './durability.js'
import { FieldError, HttpError } from './errors.js'
import type { GroupCommit } from './group-commit.js'
import type { NewMessageBody } from './schemas/messages.js'
import type { MessageStore } from './store/message-store.js'
import type { Message, NewMessage } from './domain/message.js'
import type { Tenant } from './tenants.js'
import { inShard } from './shards.js'
import { annotate, ATTR } from './tracing.js'

const MAX_SCHEDULE_MS = 180 * 24 * 60 * 60 * 1000
/**
 * ulid asks its random source for one number per character (16 per id): they are served from a
 * pool of cryptographically random bytes filled 4 KiB at a time, not one system call each. A byte
 * over 256 is uniform over ulid's 32 characters.
 */
const randomPool = new Uint8Array(4096)
let nextRandom = randomPool.length
function pooledRandom(): number {
  if (nextRandom === randomPool.length) {
    randomFillSync(randomPool)
    nextRandom = 0
  }
  return randomPool[nextRandom++]! / 256
}
const ulid = monotonicFactory(pooledRandom)
/**
 * `msg_` and a ULID, whose first ten characters are the time (ms): ids sort by creation. The next
 * character names the message's shard (src/shards.ts).
 */
export const newMessageId = (time = Date.now(), shard = 0): string => inShard(`msg_${ulid(time)}`, shard)

export interface AcceptDeps {
  config: Config
  store: MessageStore
  /** Stores the messages and adds their send jobs. */
  writer: GroupCommit
  /** Called once the messages and their jobs exist (never for an idempotent replay): metrics. */
  onCreated?: (count: number, tenant: string) => void
}

export interface Accepted {
  messages: Message[]
  /** True when an earlier request with the same Idempotency-Key created them. */
  replayed: boolean
}

/**
 * Turns validated bodies into the tenant's stored messages and send jobs (through the group commit:
 * all or nothing, so a 503 leaves nothing behind), or answers an Idempotency-Key replay. Idempotency
 * keys are the tenant's: its API keys share them.
 */
export async function acceptMessages(
  deps: AcceptDeps,
  tenant: Tenant,
  bodies: NewMessageBody[],
  fieldPrefix: (i: number) => string,
  idempotencyKey?: string,
): Promise<Accepted> {
  const now = Date.now()
  // A request's messages share a shard, the one its idempotency key lives in.
  const shard = deps.store.shardFor(tenant.name, idempotencyKey)
  const messages = bodies.map((body, i) => prepare(body, fieldPrefix(i), tenant, deps.config, now, shard))
  await checkCallbackUrls(bodies, fieldPrefix, tenant, deps.config)

  if (idempotencyKey) {
    const fingerprint = sha256(stableStringify(bodies))
    const earlier = await deps.store.reserveIdempotencyKey(tenant.name, idempotencyKey, { fingerprint, ids: messages.map((m) => m.id) })
    if (earlier) {
      if (earlier.fingerprint !== fingerprint)
        throw new HttpError(422, 'Idempotency-Key was already used with a different request body', 'IDEMPOTENCY_MISMATCH')
      return { messages: await waitForEarlier(deps.store, tenant.name, earlier.ids), replayed: true }
    }
  }

  try {
    const stored = await deps.writer.write(messages)
    deps.onCreated?.(stored.length, tenant.name)
    annotate({ [ATTR.tenant]: tenant.name }, stored)
    return { messages: stored, replayed: false }
  } catch (error) {
    // Too few replicas confirmed them, but the messages exist: a retry with the key gets them, not copies.
    if (idempotencyKey && !(error instanceof ReplicasUnavailable)) await releaseKey(deps.store, tenant.name, idempotencyKey)
    throw error
  }
}

/** The request failed: a retry with the same key is a new request. */
async function releaseKey(store: MessageStore, tenant: string, key: string): Promise<void> {
  await store.releaseIdempotencyKey(tenant, key).catch(() => {
    // Redis is gone: the key expires on its own within 24 h.
  })
}

/**
 * Callback URLs must be signed (the tenant has a signing secret, or the service does) and point to
 * public addresses (docs/api.md). Each distinct host is resolved once per request.
 */
async function checkCallbackUrls(bodies: NewMessageBody[], fieldPrefix: (i: number) => string, tenant: Tenant, config: Config): Promise<void> {
  const problems = new Map<string, Promise<string | undefined>>()
  for (const [i, body] of bodies.entries()) {
    if (!body.callbackUrl) continue
    if (!(tenant.callbackSigningSecret ?? config.CALLBACK_SIGNING_SECRET))
      throw new FieldError(`${fieldPrefix(i)}/callbackUrl`, 'cannot be used: there is no callback signing secret (CALLBACK_SIGNING_SECRET)')
    if (!problems.has(body.callbackUrl)) problems.set(body.callbackUrl, callbackUrlProblem(body.callbackUrl, config.CALLBACK_ALLOW_PRIVATE))
  }
  for (const [i, body] of bodies.entries()) {
    const problem = body.callbackUrl ? await problems.get(body.callbackUrl) : undefined
    if (problem) throw new FieldError(`${fieldPrefix(i)}/callbackUrl`, `is refused: ${problem}`)
  }
}

function prepare(body: NewMessageBody, field: string, tenant: Tenant, config: Config, now: number, shard: number): NewMessage {
  const to = normalizePhone(body.to)
  if (!to) throw new FieldError(`${field}/to`, 'must be a valid international phone number, e.g. +41 79 302 67 27')
  // JSON may carry a lone surrogate (\ud800), which Redis would store as U+FFFD: not the text accepted.
  if (!body.text.isWellFormed()) throw new FieldError(`${field}/text`, 'must be well-formed Unicode (it has a lone surrogate)')
  const from = body.from ?? tenant.defaultSender ?? config.INFOBIP_SENDER
  if (tenant.allowedSenders && !tenant.allowedSenders.includes(from))
    throw new FieldError(`${field}/from`, `must be one of this tenant's allowed senders (${tenant.allowedSenders.join(', ')})`)
  const { encoding, segments } = analyzeText(body.text)
  if (segments > MAX_SEGMENTS) throw new FieldError(`${field}/text`, `needs ${segments} segments (${encoding}); at most ${MAX_SEGMENTS} are allowed`)
  let sendAt: string | undefined
  if (body.sendAt !== undefined) {
    const at = Date.parse(body.sendAt)
    if (!(at > now)) throw new FieldError(`${field}/sendAt`, 'must be in the future')
    if (at - now > MAX_SCHEDULE_MS) throw new FieldError(`${field}/sendAt`, 'must be at most 180 days ahead')
    sendAt = new Date(at).toISOString()
  }
  return {
    id: newMessageId(now, shard),
    tenant: tenant.name,
    createdAt: new Date(now),
    to,
    from,
    text: body.text,
    reference: body.reference,
    callbackUrl: body.callbackUrl,
    sendAt,
    validityPeriodMinutes: body.validityPeriodMinutes,
    encoding,
    segments,
  }
}

/**
 * The same Idempotency-Key arrived while the first request may still be storing its messages:
 * wait for them briefly rather than answer with something half-made.
 */
async function waitForEarlier(store: MessageStore, tenant: string, ids: string[], timeoutMs = 2000): Promise<Message[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = await store.getOwned(tenant, ids)
    if (found.every((m) => m !== undefined)) return found
    if (Date.now() > deadline)
      throw new HttpError(409, 'A request with this Idempotency-Key is still being processed; retry shortly', 'IDEMPOTENCY_IN_PROGRESS')
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url')

/** JSON with sorted object keys, so that `{a, b}` and `{b, a}` fingerprint alike. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value)
}
