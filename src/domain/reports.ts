import { TypeCompiler } from '@sinclair/typebox/compiler'
import { DeliveryReport } from '../schemas/infobip.js'
import type { Transition } from '../domain/message.js'
import { statusFromInfobip } from './status.js'

/**
 * Delivery reports → status transitions (docs/statuses.md). Pure: the dlr worker applies what this returns.
 */

const checkReport = TypeCompiler.Compile(DeliveryReport)

/** What the message resource keeps of the report that set its status (`infobip.*`). */
const KEPT_FIELDS = ['messageId', 'bulkId', 'status', 'error', 'price', 'sentAt', 'doneAt', 'messageCount', 'mccMnc'] as const

export type ParsedReport =
  /** Not an object, or `messageId` / `status` missing or of the wrong type. */
  | { kind: 'invalid' }
  /** A status group we do not know: ignored. */
  | { kind: 'unknown-status'; report: DeliveryReport }
  | { kind: 'transition'; report: DeliveryReport; transition: Transition }

export function parseReport(raw: unknown): ParsedReport {
  if (!checkReport.Check(raw)) return { kind: 'invalid' }
  const report = raw as DeliveryReport
  const { messageId, status, error, doneAt } = report
  const ours = statusFromInfobip({ groupId: status.groupId ?? undefined, id: status.id ?? undefined })
  if (!ours) return { kind: 'unknown-status', report }
  return {
    kind: 'transition',
    report,
    transition: {
      id: messageId,
      status: ours,
      source: 'dlr',
      infobipStatus: status.name ?? undefined,
      infobip: kept(report),
      fingerprint: fingerprint(status.id, error?.id, doneAt),
    },
  }
}

/**
 * docs/statuses.md#transition-rules: the same messageId, status.id, error.id and doneAt make a duplicate. Fingerprints
 * are kept per message, so the messageId is not part of one.
 */
export const fingerprint = (statusId?: number | null, errorId?: number | null, doneAt?: string | null): string =>
  `${statusId ?? ''}|${errorId ?? ''}|${doneAt ?? ''}`

function kept(report: DeliveryReport): Record<string, unknown> {
  const infobip: Record<string, unknown> = {}
  for (const field of KEPT_FIELDS) {
    // v2 reports count parts as `smsCount`.
    const value = field === 'messageCount' ? (report.messageCount ?? report.smsCount) : report[field]
    if (value != null) infobip[field] = value
  }
  return infobip
}

export interface ParsedBatch {
  transitions: Transition[]
  /** The report behind each transition, same index. */
  reports: DeliveryReport[]
  invalid: number
  unknownStatus: number
}

export function parseBatch(results: readonly unknown[]): ParsedBatch {
  const batch: ParsedBatch = { transitions: [], reports: [], invalid: 0, unknownStatus: 0 }
  for (const raw of results) {
    const parsed = parseReport(raw)
    if (parsed.kind === 'invalid') batch.invalid++
    else if (parsed.kind === 'unknown-status') batch.unknownStatus++
    else {
      batch.transitions.push(parsed.transition)
      batch.reports.push(parsed.report)
    }
  }
  return batch
}
