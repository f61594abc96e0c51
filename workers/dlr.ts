import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import { maskPhone } from '../src/domain/phone.js'
import { parseBatch } from '../src/domain/reports.js'
import { dlrResults, type DlrJob } from '../src/queues.js'
import type { MessageStore } from '../src/store/message-store.js'
import type { Transition } from '../src/domain/message.js'
import type { ApplyTransitions } from '../src/changes.js'
import { annotate, ATTR } from '../src/tracing.js'

/** The `result` label of `sms_reports_total` (docs/operations.md#metrics). */
export type ReportResult = 'applied' | 'duplicate' | 'ignored' | 'unmatched' | 'invalid'
export type ReportCounts = Record<ReportResult, number>

export interface DlrDeps {
  store: MessageStore
  log: Logger
  onResult?: (result: ReportResult, count: number) => void
  /** Applies status changes (the transition script, then callbacks and metrics); default: the script alone. */
  apply?: ApplyTransitions
}

/** Unmatched reports named in one log line; the rest are only counted. */
const LOGGED_UNMATCHED = 5

/**
 * The dlr processor: parses one POST's reports and applies them all through the transition script in
 * one pipeline (docs/statuses.md), so a batch costs the same few round trips whatever its size. Reports of
 * unknown messages are kept in a capped list. Applying a job twice is harmless: every report is
 * fingerprinted, so a retried job only finds duplicates.
 */
export function makeDlrProcessor(deps: DlrDeps) {
  const { store, log } = deps
  const apply = deps.apply ?? ((transitions: Transition[]) => store.transition(transitions))

  return async function processDlr(job: Job<DlrJob>): Promise<ReportCounts> {
    const { transitions, reports, invalid, unknownStatus } = parseBatch(dlrResults(job.data))
    const counts: ReportCounts = { applied: 0, duplicate: 0, ignored: unknownStatus, unmatched: 0, invalid }
    annotate({ [ATTR.reportCount]: reports.length + invalid + unknownStatus }, transitions)
    const results = await apply(transitions)
    const unmatched = reports.filter((_, i) => results[i]!.result === 'unmatched')
    for (const r of results) counts[r.result]++
    if (unmatched.length > 0) {
      await store.keepUnmatched(unmatched)
      log.warn(
        {
          jobId: job.id,
          count: unmatched.length,
          // Only our ids and the last four digits: no number, no text (docs/statuses.md#transition-rules).
          sample: unmatched.slice(0, LOGGED_UNMATCHED).map((r) => ({ messageId: r.messageId, to: typeof r.to === 'string' ? maskPhone(r.to) : undefined })),
        },
        'delivery reports for unknown messages',
      )
    }
    for (const [result, count] of Object.entries(counts)) if (count > 0) deps.onResult?.(result as ReportResult, count)
    log.info({ jobId: job.id, ...counts }, 'applied delivery reports')
    return counts
  }
}
