import { Type, type Static } from '@sinclair/typebox'

/**
 * The statuses of a message (docs/statuses.md). A status change is applied only when its rank is higher than
 * the current one, so a final status (rank 3) is never replaced.
 */
export const STATUS = {
  QUEUED: 'QUEUED',
  PENDING: 'PENDING',
  SENT: 'SENT',
  DELIVERED: 'DELIVERED',
  UNDELIVERABLE: 'UNDELIVERABLE',
  EXPIRED: 'EXPIRED',
  REJECTED: 'REJECTED',
  FAILED: 'FAILED',
  CANCELED: 'CANCELED',
} as const

export type Status = (typeof STATUS)[keyof typeof STATUS]

export const StatusSchema = Type.Union(Object.values(STATUS).map((s) => Type.Literal(s)))

export const RANK: Record<Status, number> = {
  QUEUED: 0,
  PENDING: 1,
  SENT: 2,
  DELIVERED: 3,
  UNDELIVERABLE: 3,
  EXPIRED: 3,
  REJECTED: 3,
  FAILED: 3,
  CANCELED: 3,
}

export const FINAL_RANK = 3
export const isFinal = (status: Status): boolean => RANK[status] === FINAL_RANK

/** Where a status change came from; recorded on every event. */
export const EventSourceSchema = Type.Union([Type.Literal('api'), Type.Literal('send'), Type.Literal('dlr'), Type.Literal('reconcile')])
export type EventSource = Static<typeof EventSourceSchema>

/** An Infobip status object as it appears in send answers, reports and logs. Every field is optional. */
export interface InfobipStatus {
  groupId?: number
  groupName?: string
  id?: number
  name?: string
  description?: string
  action?: string
}

export interface InfobipError {
  groupId?: number
  groupName?: string
  id?: number
  name?: string
  description?: string
  permanent?: boolean
}

/** Infobip status id of REJECTED_DUPLICATE_MESSAGE_ID: Infobip already has a message with this id. */
export const REJECTED_DUPLICATE_MESSAGE_ID = 23
/** Infobip status id of REJECTED_SYSTEM_ERROR: a rejection worth retrying. */
export const REJECTED_SYSTEM_ERROR = 21
/** Infobip status id of DELIVERED_TO_OPERATOR: delivered to the network, not yet to the handset. */
export const DELIVERED_TO_OPERATOR = 2

/**
 * Maps an Infobip status to ours on numeric ids only (Infobip spells group names inconsistently).
 * Returns undefined for anything we do not know: the caller ignores and counts it.
 */
export function statusFromInfobip(status: InfobipStatus | undefined): Status | undefined {
  switch (status?.groupId) {
    case 0: // ACCEPTED: numeric id not documented; treated as "Infobip has it"
    case 1:
      return STATUS.PENDING
    case 2:
      return STATUS.UNDELIVERABLE
    case 3:
      return status.id === DELIVERED_TO_OPERATOR ? STATUS.SENT : STATUS.DELIVERED
    case 4:
      return STATUS.EXPIRED
    case 5:
      return STATUS.REJECTED
    default:
      return undefined
  }
}
