import type { AppliedChange, Message, MessageError, MessageEvent, TransitionResult } from '../domain/message.js'
import { isFinal, type Status } from '../domain/status.js'
import { DEFAULT_TENANT } from '../tenants.js'

/**
 * How a message lives in Redis: a hash of short fields (so that Redis keeps it in its compact
 * encoding), one field `e<seq>` per event and `f:<fingerprint>` per report seen, and the `infobip`
 * object as JSON in a key of its own. See docs/store.md#the-message-record.
 */

/** The record's hash fields that hold report fingerprints, and its events. */
export const FINGERPRINT_FIELD = 'f:'
const EVENT_FIELD = /^e(\d+)$/

/** An event as the record keeps it: `status|source|at (ms)|infobip status`. */
export const eventField = (e: MessageEvent): string => `${e.status}|${e.source}|${Date.parse(e.at)}|${e.infobipStatus ?? ''}`

/** The hash of a new message holds only what is set, to keep records small. */
export function toHash(m: Message, tenant: string, job?: string): Record<string, string | number> {
  const hash: Record<string, string | number> = {
    id: m.id,
    tenant,
    to: m.to,
    from: m.from,
    text: m.text,
    status: m.status,
    encoding: m.encoding,
    segments: m.segments,
    attempts: 0,
    seq: 1,
    e1: eventField(m.events[0]!),
  }
  if (m.reference !== null) hash.reference = m.reference
  if (m.callbackUrl !== null) hash.callbackUrl = m.callbackUrl
  if (m.sendAt !== null) hash.sendAt = m.sendAt
  // A scheduled message's delayed send job, which a cancel removes.
  if (job !== undefined) hash.job = job
  if (m.validityPeriodMinutes !== null) hash.validityPeriodMinutes = m.validityPeriodMinutes
  return hash
}

function eventsOf(h: Record<string, string>): MessageEvent[] {
  const events: MessageEvent[] = []
  for (const [field, value] of Object.entries(h)) {
    const seq = EVENT_FIELD.exec(field)?.[1]
    if (!seq) continue
    const [status, source, at, infobipStatus] = value.split('|')
    events.push({
      seq: Number(seq),
      status: status as Status,
      source: source as MessageEvent['source'],
      at: new Date(Number(at)).toISOString(),
      ...(infobipStatus ? { infobipStatus } : {}),
    })
  }
  return events.sort((a, b) => a.seq - b.seq)
}

/** Whose a record is: records written before tenants existed are the default tenant's. */
export const tenantOf = (h: Record<string, string>): string => h.tenant ?? DEFAULT_TENANT

/** The resource from its hash and `infobip` JSON. `createdAt` and `updatedAt` are the first and last event's times. */
export function fromHash(h: Record<string, string>, infobip: string | null): Message {
  const status = h.status as Status
  const events = eventsOf(h)
  return {
    id: h.id!,
    to: h.to!,
    from: h.from!,
    text: h.text!,
    reference: h.reference ?? null,
    callbackUrl: h.callbackUrl ?? null,
    sendAt: h.sendAt ?? null,
    validityPeriodMinutes: h.validityPeriodMinutes ? Number(h.validityPeriodMinutes) : null,
    status,
    final: isFinal(status),
    encoding: h.encoding as Message['encoding'],
    segments: Number(h.segments),
    attempts: Number(h.attempts ?? 0),
    infobip: infobip ? (JSON.parse(infobip) as Record<string, unknown>) : null,
    error: h.error ? (JSON.parse(h.error) as MessageError) : null,
    events,
    createdAt: events[0]!.at,
    updatedAt: events[events.length - 1]!.at,
  }
}

/** One change's reply from the TRANSITION script. */
export function parseTransition(reply: string[]): TransitionResult {
  const [result, previous, seq, submittedAt, callbackUrl, reference, tenant, at] = reply
  const change = (): AppliedChange => ({
    previous: previous as Status,
    seq: Number(seq),
    submittedAt: submittedAt ? Number(submittedAt) : null,
    callbackUrl: callbackUrl || null,
    reference: reference || null,
    tenant: tenant!,
  })
  switch (result) {
    case 'applied':
      return { result, ...change() }
    case 'ignored':
      return { result, current: previous as Status }
    case 'duplicate':
      return seq ? { result, earlier: { ...change(), at: new Date(Number(at)).toISOString() } } : { result }
    default:
      return { result: 'unmatched' }
  }
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/** The smallest message id created at `iso`: ULIDs begin with their time in Crockford base32. */
export function idBound(iso: string): string {
  let ms = Date.parse(iso)
  let time = ''
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[ms % 32] + time
    ms = Math.floor(ms / 32)
  }
  return `msg_${time}`
}
