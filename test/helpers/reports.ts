import { RANK, STATUS, type Status } from '../../src/domain/status.js'
import { ERRORS, STATUSES } from '../../src/simulator/outcomes.js'
import type { Message, Transition } from '../../src/domain/message.js'

/** Infobip's status objects (as the simulator sends them), for building reports. */
export { ERRORS, STATUSES }
type InfobipStatus = (typeof STATUSES)[keyof typeof STATUSES]

/** A v3 report as Infobip's example shows it, unknown fields included. */
export function v3Report(messageId: string, status: InfobipStatus = STATUSES.DELIVERED_TO_HANDSET, extra: Record<string, unknown> = {}) {
  return {
    bulkId: 'BULK-ID-123-xyz',
    messageId,
    to: '41793026727',
    sender: 'InfoSMS',
    sentAt: '2026-11-28T10:00:00.000+0000',
    doneAt: '2026-11-28T10:00:04.870+0000',
    messageCount: 1,
    mccMnc: '22801',
    callbackData: messageId,
    price: { pricePerMessage: 0.01, currency: 'EUR' },
    status,
    error: status.groupId === 2 ? ERRORS.EC_ABSENT_SUBSCRIBER : ERRORS.NO_ERROR,
    platform: { entityId: 'promotional-traffic-entity', applicationId: 'marketing-automation-application' },
    campaignReferenceId: 'summersale',
    ...extra,
  }
}

/** The same report in the v2 shape (`from`, `smsCount`, flat entity fields). */
/** What the send worker records when Infobip accepts `id`: PENDING_ACCEPTED, settling the submission. */
export const sendAccepted = (id: string): Transition => ({
  id,
  status: 'PENDING',
  source: 'send',
  infobipStatus: 'PENDING_ACCEPTED',
  infobip: { messageId: id, status: STATUSES.PENDING_ACCEPTED },
  settlesSubmission: true,
})

export function v2Report(messageId: string, status: InfobipStatus = STATUSES.DELIVERED_TO_HANDSET, extra: Record<string, unknown> = {}) {
  const { sender, messageCount, platform, ...rest } = v3Report(messageId, status)
  return { ...rest, from: sender, smsCount: messageCount, entityId: platform.entityId, applicationId: platform.applicationId, ...extra }
}

// ---------------------------------------------------------------------------------------------------
// A reference model of the transition rules (docs/statuses.md), written from the rules and not from the Lua script, so that tests can
// compare the two.

export interface ModelEvent {
  status: Status
  source: string
  infobipStatus?: string
}

export interface ModelMessage {
  status: Status
  events: ModelEvent[]
  infobip: Record<string, unknown> | null
  fingerprints: Set<string>
}

export type ModelResult = 'applied' | 'ignored' | 'duplicate' | 'unmatched'

export const newModelMessage = (): ModelMessage => ({
  status: STATUS.QUEUED,
  events: [{ status: STATUS.QUEUED, source: 'api' }],
  infobip: null,
  fingerprints: new Set(),
})

/**
 * Rule 6: unknown message → unmatched. Rule 2: a fingerprint seen before → duplicate (every report
 * that got past this check counts as seen, applied or not). Rules 1, 3, 4: only a higher rank
 * changes anything; a change writes status, `infobip` and one event.
 */
export function applyModel(messages: Map<string, ModelMessage>, t: Transition): ModelResult {
  const m = messages.get(t.id)
  if (!m) return 'unmatched'
  if (t.fingerprint) {
    if (m.fingerprints.has(t.fingerprint)) return 'duplicate'
    m.fingerprints.add(t.fingerprint)
  }
  if (RANK[t.status] <= RANK[m.status]) return 'ignored'
  m.status = t.status
  if (t.infobip) m.infobip = t.infobip
  m.events.push({ status: t.status, source: t.source, ...(t.infobipStatus ? { infobipStatus: t.infobipStatus } : {}) })
  return 'applied'
}

/** What a stored message and a model message are compared on (times and seq numbers aside). */
export function comparable(m: Pick<Message, 'status' | 'events' | 'infobip'> | ModelMessage) {
  return {
    status: m.status,
    events: m.events.map((e) => ({ status: e.status, source: e.source, ...(e.infobipStatus ? { infobipStatus: e.infobipStatus } : {}) })),
    // The store keeps `infobip.*` flattened and gives it back with sorted keys.
    infobip: sortKeys(m.infobip),
  }
}

export function sortKeys(value: unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return value
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] != null)
      .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
  )
}

/** A seeded PRNG (mulberry32), so that a failing shuffle can be replayed. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function shuffle<T>(items: readonly T[], rand: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/**
 * Serializability: the model applied to the transitions behind the stored events, in event order,
 * then to all the others. If that reproduces the stored state exactly, the state is a sequential
 * application of the message's reports; if no report explains an event, says which.
 */
export function witness(stored: ReturnType<typeof comparable>, transitions: readonly Transition[]): ReturnType<typeof comparable> | string {
  const left = [...transitions]
  const order: Transition[] = []
  const infobipOf = (value: unknown) => JSON.stringify(sortKeys(value ?? null))
  for (const [i, e] of stored.events.entries()) {
    if (i === 0) continue
    const last = i === stored.events.length - 1
    const at = left.findIndex(
      (tr) =>
        tr.status === e.status &&
        tr.source === e.source &&
        (tr.infobipStatus ?? undefined) === e.infobipStatus &&
        (!last || infobipOf(tr.infobip) === infobipOf(stored.infobip)),
    )
    if (at < 0) return `no report explains event ${i + 1} (${e.status})`
    order.push(...left.splice(at, 1))
  }
  const model = newModelMessage()
  const messages = new Map([['x', model]])
  for (const tr of [...order, ...left]) applyModel(messages, { ...tr, id: 'x' })
  return comparable(model)
}
