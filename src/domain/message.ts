import { Type, type Static } from '@sinclair/typebox'
import { EventSourceSchema, STATUS, StatusSchema, type Status } from './status.js'

/**
 * The message model. `MessageResource` is both the API's answer schema and, through `Static`, the
 * type every part of the service passes around: adding a field is a change here and in the store's
 * codec (`src/store/codec.ts`). See docs/api.md#the-message-resource.
 */

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])

export const EncodingSchema = Type.Union([Type.Literal('GSM-7'), Type.Literal('UCS-2')])

export const MessageEventSchema = Type.Object({
  seq: Type.Integer(),
  status: StatusSchema,
  source: EventSourceSchema,
  at: Type.String({ format: 'date-time' }),
  infobipStatus: Type.Optional(Type.String()),
})

export const MessageErrorSchema = Type.Object({ code: Type.String(), message: Type.String() })

export const MessageResource = Type.Object(
  {
    id: Type.String(),
    to: Type.String(),
    from: Type.String(),
    text: Type.String(),
    reference: Nullable(Type.String()),
    callbackUrl: Nullable(Type.String()),
    sendAt: Nullable(Type.String()),
    validityPeriodMinutes: Type.Union([Type.Integer(), Type.Null()]),
    status: StatusSchema,
    final: Type.Boolean(),
    encoding: EncodingSchema,
    segments: Type.Integer(),
    attempts: Type.Integer(),
    // What Infobip said last (its report or send answer, fields as Infobip names them).
    infobip: Type.Union([Type.Unsafe<Record<string, unknown>>(Type.Object({}, { additionalProperties: true })), Type.Null()]),
    error: Type.Union([MessageErrorSchema, Type.Null()]),
    events: Type.Array(MessageEventSchema),
    createdAt: Type.String(),
    updatedAt: Type.String(),
  },
  { $id: 'Message' },
)

export type Message = Static<typeof MessageResource>
export type MessageEvent = Static<typeof MessageEventSchema>
export type MessageError = Static<typeof MessageErrorSchema>
export type Encoding = Static<typeof EncodingSchema>

/** What the API stores for a new message; everything else is derived or added later. */
export interface NewMessage {
  id: string
  /** Whose it is (docs/tenants.md): kept in the record, never shown in the resource. */
  tenant: string
  to: string
  from: string
  text: string
  reference?: string | undefined
  callbackUrl?: string | undefined
  sendAt?: string | undefined
  validityPeriodMinutes?: number | undefined
  encoding: Encoding
  segments: number
  /** When it was accepted (the time in its id); default: when it is stored. */
  createdAt?: Date | undefined
  /** The id of a scheduled message's delayed send job (kept, so that a cancel can remove it). */
  job?: string | undefined
}

/** The resource of a message just accepted: QUEUED, with its first event at `at`. */
export function queuedMessage(m: NewMessage, at: string): Message {
  return {
    id: m.id,
    to: m.to,
    from: m.from,
    text: m.text,
    reference: m.reference ?? null,
    callbackUrl: m.callbackUrl ?? null,
    sendAt: m.sendAt ?? null,
    validityPeriodMinutes: m.validityPeriodMinutes ?? null,
    status: STATUS.QUEUED,
    final: false,
    encoding: m.encoding,
    segments: m.segments,
    attempts: 0,
    infobip: null,
    error: null,
    events: [{ seq: 1, status: STATUS.QUEUED, source: 'api', at }],
    createdAt: at,
    updatedAt: at,
  }
}

/** The error of a message whose number is on its tenant's suppression list (docs/api.md#suppressions). */
export const SUPPRESSED_ERROR: MessageError = { code: 'SUPPRESSED', message: 'the number is on the suppression list of the tenant' }

/** A message accepted for a suppressed number: REJECTED at once, never submitted (its second event at `at`). */
export function suppressedMessage(m: Message, at: string): Message {
  return {
    ...m,
    status: STATUS.REJECTED,
    final: true,
    error: SUPPRESSED_ERROR,
    events: [...m.events, { seq: 2, status: STATUS.REJECTED, source: 'api', at }],
    updatedAt: at,
  }
}

/**
 * Messages per Infobip request, per send job and per store script call: a send job is one request to
 * Infobip, and Redis runs each script call whole, so that a call stays short (a few ms).
 */
export const BATCH_SIZE = 100

/** `items` in runs of BATCH_SIZE. */
export function* inBatches<T>(items: readonly T[]): Generator<T[]> {
  for (let start = 0; start < items.length; start += BATCH_SIZE) yield items.slice(start, start + BATCH_SIZE)
}

/** One message as the send worker hands it to Infobip. */
export interface Submission {
  id: string
  to: string
  from: string
  text: string
  validityPeriodMinutes?: number | undefined
}

/** A status change to apply. `fingerprint` identifies a delivery report for deduplication. */
export interface Transition {
  id: string
  status: Status
  source: MessageEvent['source']
  at?: string
  infobipStatus?: string | undefined
  infobip?: Record<string, unknown> | undefined
  error?: MessageError | undefined
  fingerprint?: string | undefined
  /** The send worker got Infobip's answer: the submission's outcome is known. */
  settlesSubmission?: boolean
}

/** What an applied change made: the event `seq`, and what its callback needs. */
export interface AppliedChange {
  previous: Status
  seq: number
  submittedAt: number | null
  callbackUrl: string | null
  reference: string | null
  tenant: string
}

export type TransitionResult =
  | ({ result: 'applied' } & AppliedChange)
  | { result: 'ignored'; current: Status }
  /** `earlier`: the change this report made when it was first applied, if it made one. */
  | { result: 'duplicate'; earlier?: AppliedChange & { at: string } }
  | { result: 'unmatched' }

/**
 * A message claimed for submission comes with what the submission needs. Otherwise: `missing` (no
 * record), `done` (past QUEUED: never submitted again), `unknown` (an earlier submission's outcome is
 * not known: look it up first), `busy` (another job is submitting it right now).
 */
export type Claim =
  | { result: 'ok'; submission: Submission }
  /** Not claimed: its number is suppressed, so the claim made it REJECTED (SUPPRESSED) instead. */
  | { result: 'suppressed'; change: AppliedChange }
  | { result: 'missing' | 'done' | 'unknown' | 'busy' }

export interface SearchQuery {
  tenant: string
  status?: Status | undefined
  reference?: string | undefined
  /** Digits only, as stored. */
  to?: string | undefined
  /** ISO instants: created at or after `since`, before `until`. */
  since?: string | undefined
  until?: string | undefined
  limit: number
  cursor?: string | undefined
}
