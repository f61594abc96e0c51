import type { Submission } from '../domain/message.js'
import type { InfobipError, InfobipStatus } from '../domain/status.js'

export interface WebhookTarget {
  /** `PUBLIC_BASE_URL/infobip-dlr?token=…` */
  url: string
}

/** The per-destination part of Infobip's answer (v2 and v3 normalised). */
export interface DestinationResult {
  messageId: string
  status?: InfobipStatus
  messageCount?: number
}

/** A report as Infobip pushes it or as its logs API returns it (v2 and v3 fields alike). */
export interface InfobipReport {
  bulkId?: string
  messageId?: string
  to?: string
  destination?: string
  sender?: string
  from?: string
  sentAt?: string
  doneAt?: string
  messageCount?: number
  smsCount?: number
  mccMnc?: string
  callbackData?: string
  price?: { pricePerMessage?: number; currency?: string }
  status?: InfobipStatus
  error?: InfobipError
  [field: string]: unknown
}

/** `POST /sms/3/messages` body (docs/infobip.md): our id is the destination's messageId. */
export function v3Body(messages: Submission[], webhook: WebhookTarget): unknown {
  return {
    messages: messages.map((m) => ({
      sender: m.from,
      destinations: [{ to: m.to, messageId: m.id }],
      content: { text: m.text },
      webhooks: {
        delivery: { url: webhook.url },
        contentType: 'application/json',
        callbackData: m.id,
      },
      ...(m.validityPeriodMinutes ? { options: { validityPeriod: { amount: m.validityPeriodMinutes, timeUnit: 'MINUTES' } } } : {}),
    })),
    // Without it the answer leaves out how many parts each message costs.
    options: { includeSmsCountInResponse: true },
  }
}

/** `POST /sms/2/text/advanced` body. */
export function v2Body(messages: Submission[], webhook: WebhookTarget): unknown {
  return {
    messages: messages.map((m) => ({
      from: m.from,
      destinations: [{ to: m.to, messageId: m.id }],
      text: m.text,
      notifyUrl: webhook.url,
      notifyContentType: 'application/json',
      callbackData: m.id,
      ...(m.validityPeriodMinutes ? { validityPeriod: m.validityPeriodMinutes } : {}),
    })),
  }
}

/** What became of one submission request. `network` and `server_error` leave the outcome unknown. */
export type SubmitOutcome =
  | { kind: 'accepted'; bulkId?: string; results: DestinationResult[] }
  | { kind: 'rate_limited'; retryAfterMs?: number; detail: string }
  /** 401 or 403: the API key is wrong, revoked or lacks a scope — the account's problem, not the messages'. */
  | { kind: 'unauthorized'; status: 401 | 403; detail: string }
  | { kind: 'client_error'; status: number; detail: string }
  | { kind: 'server_error'; status: number; detail: string }
  | { kind: 'network'; detail: string }

/** Classifies an HTTP answer of the send API. */
export function classifySendAnswer(status: number, headers: Record<string, string | string[] | undefined>, json: unknown): SubmitOutcome {
  if (status >= 200 && status < 300) return { kind: 'accepted', ...parseSendAnswer(json) }
  if (status === 429) {
    const wait = retryAfterMs(headers['retry-after'])
    return { kind: 'rate_limited', ...(wait !== undefined ? { retryAfterMs: wait } : {}), detail: errorText(json) }
  }
  if (status === 401 || status === 403) return { kind: 'unauthorized', status, detail: errorText(json) }
  if (status >= 400 && status < 500) return { kind: 'client_error', status, detail: errorText(json) }
  return { kind: 'server_error', status, detail: errorText(json) }
}

/** Reads the per-destination results of a 200 answer, v2 (`to`, `smsCount`) or v3 (`destination`, `details`). */
export function parseSendAnswer(body: unknown): { bulkId?: string; results: DestinationResult[] } {
  const answer = (body ?? {}) as { bulkId?: string; messages?: Record<string, unknown>[] }
  const results = (Array.isArray(answer.messages) ? answer.messages : []).flatMap((m) => {
    if (typeof m?.messageId !== 'string') return []
    const details = m.details as { messageCount?: number } | undefined
    const count = details?.messageCount ?? (m.smsCount as number | undefined)
    return [{ messageId: m.messageId, status: m.status as InfobipStatus | undefined, ...(count !== undefined ? { messageCount: count } : {}) }]
  })
  return { ...(answer.bulkId ? { bulkId: answer.bulkId } : {}), results }
}

/** Infobip's own error text, from either envelope (v3 `ApiError`, v2 `requestError.serviceException`). */
export function errorText(body: unknown): string {
  const b = (body ?? {}) as {
    description?: string
    violations?: { property?: string; violation?: string }[]
    requestError?: { serviceException?: { messageId?: string; text?: string } }
  }
  if (b.description) {
    const violations = (b.violations ?? []).map((v) => `${v.property}: ${v.violation}`).join('; ')
    return violations ? `${b.description} (${violations})` : b.description
  }
  const ex = b.requestError?.serviceException
  if (ex?.text) return ex.messageId ? `${ex.messageId}: ${ex.text}` : ex.text
  return typeof body === 'string' && body ? body.slice(0, 500) : 'no error text'
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (!value) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}
