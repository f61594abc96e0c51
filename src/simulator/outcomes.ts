import { RANK, statusFromInfobip, type InfobipError, type InfobipStatus } from '../domain/status.js'

/**
 * Everything the simulator says, as data: Infobip's status and error objects, the behaviour picked by a
 * destination's last four digits (docs/simulator.md#outcomes-by-number), and the shapes of answers, reports, log entries and errors.
 * Pure: no clock, no I/O — callers pass the times in.
 */

export type StatusObject = Required<Omit<InfobipStatus, 'action'>>
type ErrorObject = Required<InfobipError>

const status = (groupId: number, groupName: string, id: number, name: string, description: string): StatusObject => ({
  groupId,
  groupName,
  id,
  name,
  description,
})

export const STATUSES = {
  PENDING_ACCEPTED: status(1, 'PENDING', 26, 'PENDING_ACCEPTED', 'Message sent to next instance'),
  PENDING_ENROUTE: status(1, 'PENDING', 7, 'PENDING_ENROUTE', 'Message sent to next instance'),
  UNDELIVERABLE_NOT_DELIVERED: status(2, 'UNDELIVERABLE', 9, 'UNDELIVERABLE_NOT_DELIVERED', 'Message sent not delivered'),
  DELIVERED_TO_OPERATOR: status(3, 'DELIVERED', 2, 'DELIVERED_TO_OPERATOR', 'Message delivered to operator'),
  DELIVERED_TO_HANDSET: status(3, 'DELIVERED', 5, 'DELIVERED_TO_HANDSET', 'Message delivered to handset'),
  EXPIRED_EXPIRED: status(4, 'EXPIRED', 15, 'EXPIRED_EXPIRED', 'Message expired'),
  REJECTED_NETWORK: status(5, 'REJECTED', 6, 'REJECTED_NETWORK', 'Network is forbidden'),
  REJECTED_DESTINATION_NOT_REGISTERED: status(5, 'REJECTED', 18, 'REJECTED_DESTINATION_NOT_REGISTERED', 'Destination not registered'),
  REJECTED_DUPLICATE_MESSAGE_ID: status(5, 'REJECTED', 23, 'REJECTED_DUPLICATE_MESSAGE_ID', 'Rejected duplicate message ID'),
} as const

export const ERRORS = {
  NO_ERROR: { groupId: 0, groupName: 'OK', id: 0, name: 'NO_ERROR', description: 'No Error', permanent: false },
  EC_ABSENT_SUBSCRIBER: { groupId: 1, groupName: 'HANDSET_ERRORS', id: 27, name: 'EC_ABSENT_SUBSCRIBER', description: 'Absent Subscriber', permanent: false },
} as const satisfies Record<string, ErrorObject>

/** One report in a message's life. `posts` is how many times it is POSTed: 0 = only the logs API sees it. */
export interface ReportStep {
  status: StatusObject
  error: ErrorObject
  posts: number
}

/** HTTP codes the simulator answers a submission with instead of accepting it. */
export type RefusalCode = 400 | 429 | 500

export interface Behaviour {
  /** Refuse the first `times` submissions of the message with `code`, then accept. */
  refuse?: { code: RefusalCode; times: number }
  /** Answer 200 with this REJECTED status for the destination instead of accepting it; nothing follows. */
  reject?: StatusObject
  /** Accept, then answer 502 as a gateway in front of Infobip would: the client cannot tell it was accepted. */
  badGateway?: boolean
  /** Reports in order; step i is due (i + 1) × SIM_DLR_DELAY_MS after acceptance. */
  reports: ReportStep[]
}

const report = (s: StatusObject, posts = 1, error: ErrorObject = ERRORS.NO_ERROR): ReportStep => ({ status: s, error, posts })
const delivered = report(STATUSES.DELIVERED_TO_HANDSET)

const DEFAULT_BEHAVIOUR: Behaviour = { reports: [delivered] }

/** The outcome table (docs/simulator.md#outcomes-by-number), keyed by the destination's last four digits. */
export const BEHAVIOURS: Readonly<Record<string, Behaviour>> = {
  '0001': { reports: [report(STATUSES.UNDELIVERABLE_NOT_DELIVERED, 1, ERRORS.EC_ABSENT_SUBSCRIBER)] },
  '0002': { reports: [report(STATUSES.EXPIRED_EXPIRED)] },
  '0003': { reports: [report(STATUSES.REJECTED_NETWORK)] },
  '0004': { refuse: { code: 500, times: 2 }, reports: [delivered] },
  '0005': { refuse: { code: 429, times: 1 }, reports: [delivered] },
  '0006': { refuse: { code: 400, times: Number.POSITIVE_INFINITY }, reports: [] },
  '0007': { reports: [report(STATUSES.DELIVERED_TO_HANDSET, 3)] },
  '0008': { reports: [delivered, report(STATUSES.PENDING_ENROUTE)] },
  '0009': { reports: [report(STATUSES.DELIVERED_TO_HANDSET, 0)] },
  '0010': { reports: [report(STATUSES.DELIVERED_TO_OPERATOR), delivered] },
  '0011': { reject: STATUSES.REJECTED_DESTINATION_NOT_REGISTERED, reports: [] },
  '0012': { badGateway: true, reports: [delivered] },
  // Some operators never send the handset report (infobip.md): DELIVERED_TO_OPERATOR stays the last word.
  '0013': { reports: [report(STATUSES.DELIVERED_TO_OPERATOR)] },
}

/** Punctuation such as a leading `+` does not count: only the last four digits do. */
export const behaviourFor = (to: string): Behaviour => BEHAVIOURS[to.replace(/\D/g, '').slice(-4)] ?? DEFAULT_BEHAVIOUR

/** When one request triggers several refusals, the permanent one wins, then the server error. */
const REFUSAL_PRECEDENCE: readonly RefusalCode[] = [400, 500, 429]
export const worstRefusal = (codes: readonly RefusalCode[]): RefusalCode | undefined => REFUSAL_PRECEDENCE.find((code) => codes.includes(code))

/**
 * Whether a later report replaces what the logs API shows. Infobip's own view of a message never goes
 * back from a final status: a late PENDING report (0008) is an out-of-order push, not a new state.
 */
export function supersedes(next: StatusObject, current: StatusObject | undefined): boolean {
  if (!current) return true
  const rank = (s: StatusObject) => RANK[statusFromInfobip(s) ?? 'QUEUED']
  return rank(next) >= rank(current)
}

/** Infobip's timestamp format, `yyyy-MM-dd'T'HH:mm:ss.SSS+0000`. */
export const infobipTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '+0000')

export type Api = 'v3' | 'v2'

/** What the simulator knows of one accepted message, as reports and logs describe it. */
export interface SentMessage {
  api: Api
  bulkId: string
  messageId: string
  to: string
  sender: string
  callbackData?: string
  messageCount: number
  sentAt: number
}

const PRICE = { pricePerMessage: 0.01, currency: 'EUR' } as const
const MCC_MNC = '22801'

export interface V3Report {
  bulkId: string
  messageId: string
  to: string
  sender: string
  sentAt: string
  doneAt: string
  messageCount: number
  mccMnc: string
  callbackData?: string
  price: typeof PRICE
  status: StatusObject
  error: ErrorObject
}

export type V2Report = Omit<V3Report, 'sender' | 'messageCount'> & { from: string; smsCount: number }
/** A report the simulator posts; the service's `DeliveryReport` (src/schemas/infobip.ts) is what it accepts. */
export type SimulatedReport = V3Report | V2Report

/** The report for one step, in the shape (and field order) of the API the message was sent through. */
export function deliveryReport(m: SentMessage, step: ReportStep, doneAt: number): SimulatedReport {
  const head = { bulkId: m.bulkId, messageId: m.messageId, to: m.to }
  const times = { sentAt: infobipTime(m.sentAt), doneAt: infobipTime(doneAt) }
  const tail = { mccMnc: MCC_MNC, callbackData: m.callbackData, price: PRICE, status: step.status, error: step.error }
  return m.api === 'v3'
    ? { ...head, sender: m.sender, ...times, messageCount: m.messageCount, ...tail }
    : { ...head, from: m.sender, ...times, smsCount: m.messageCount, ...tail }
}

/** What the logs API shows for a message: its latest report, or PENDING_ACCEPTED before any. */
export interface Shown {
  status: StatusObject
  error: ErrorObject
  doneAt: number
}

export function logEntry(m: SentMessage, shown: Shown | undefined) {
  return {
    sender: m.sender,
    destination: m.to,
    bulkId: m.bulkId,
    messageId: m.messageId,
    sentAt: infobipTime(m.sentAt),
    doneAt: shown ? infobipTime(shown.doneAt) : undefined,
    messageCount: m.messageCount,
    price: PRICE,
    status: shown?.status ?? STATUSES.PENDING_ACCEPTED,
    error: shown?.error ?? ERRORS.NO_ERROR,
  }
}

export type ErrorCode = 400 | 401 | 403 | 429 | 500

// The texts of the examples in Infobip's OpenAPI spec (infobip.md §6), without their links to its docs.
const V3_ERRORS: Record<ErrorCode, { errorCode: string; description: string; action: string }> = {
  400: { errorCode: 'E400', description: 'Request cannot be processed.', action: 'Check the syntax, violations and adjust the request.' },
  401: {
    errorCode: 'E401',
    description: 'The request lacks valid authentication credentials for the requested resource.',
    action: 'Check the resources and adjust authentication credentials.',
  },
  403: {
    errorCode: 'E403',
    description: 'Insufficient permissions to access the requested resource.',
    action: 'Repeat the request with new or different credentials.',
  },
  429: { errorCode: 'E429', description: 'Too many requests sent.', action: 'Check request rate limit specified in the API endpoint documentation resource.' },
  500: { errorCode: 'E500', description: 'Something went wrong.', action: 'Contact the support.' },
}

const V2_ERRORS: Record<ErrorCode, { messageId: string; text: string }> = {
  400: { messageId: 'BAD_REQUEST', text: 'Bad request' },
  401: { messageId: 'UNAUTHORIZED', text: 'Unauthorized' },
  403: { messageId: 'FORBIDDEN', text: 'Forbidden' },
  429: { messageId: 'TOO_MANY_REQUESTS', text: 'Too many requests' },
  500: { messageId: 'GENERAL_ERROR', text: 'Something went wrong. Please contact support.' },
}

export interface Violation {
  property: string
  violation: string
}

/** Infobip's newer error envelope, used on /sms/3/*. */
export function v3Error(code: ErrorCode, description?: string, violations: Violation[] = []) {
  const base = V3_ERRORS[code]
  return { ...base, description: description ?? base.description, violations, resources: [] as unknown[] }
}

/** Infobip's legacy error envelope, used on /sms/2/*. */
export function v2Error(code: ErrorCode, text?: string, violations: Violation[] = []) {
  const validationErrors = violations.length ? Object.fromEntries(violations.map((v) => [v.property, [v.violation]])) : undefined
  const base = V2_ERRORS[code]
  return { requestError: { serviceException: { ...base, text: text ?? base.text, validationErrors } } }
}

export const errorBody = (api: Api, code: ErrorCode, description?: string, violations?: Violation[]) =>
  api === 'v3' ? v3Error(code, description, violations) : v2Error(code, description, violations)
