import type { Logger } from 'pino'
import { parseReport } from '../src/domain/reports.js'
import type { InfobipClient } from '../src/infobip/client.js'
import type { MessageStore } from '../src/store/message-store.js'
import type { Transition, TransitionResult } from '../src/domain/message.js'

/** Infobip's logs keep messages for 48 hours; after that a message can no longer be looked up. */
export const LOGS_RETENTION_MS = 48 * 60 * 60 * 1000
/** Infobip allows 120 calls a minute to the logs API. */
const CALL_SPACING_MS = 500
/** Ids per logs call: 60 ids of 30 characters stay under the 2,048-character limit. */
const IDS_PER_CALL = 60
/** A bound on one run, so that it ends well before the next (at most about 50 seconds of calls). */
const MAX_CALLS_PER_RUN = 100

export interface ReconcileDeps {
  store: MessageStore
  infobip: InfobipClient
  log: Logger
  afterSeconds: number
  ttlDays: number
  apply: (transitions: Transition[]) => Promise<TransitionResult[]>
  sleep?: (ms: number) => Promise<void>
}

/**
 * Infobip pushes each report with retries but keeps no queue for us. The reconciler looks up, in
 * Infobip's logs API (never the read-once reports API), the messages still not final
 * `afterSeconds` after submission, and applies what it finds through the same transition script.
 */
export function makeReconcileProcessor(deps: ReconcileDeps) {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))

  return async function reconcile(): Promise<{ looked: number; applied: number; stale: number }> {
    const now = Date.now()
    const staleBefore = now - LOGS_RETENTION_MS
    const stale = await deps.store.countOpenBefore(staleBefore)
    await deps.store.setStale(stale)
    await deps.store.trimIndexes(new Date(now - deps.ttlDays * 24 * 60 * 60 * 1000))

    const due = (await deps.store.openBefore(now - deps.afterSeconds * 1000, IDS_PER_CALL * MAX_CALLS_PER_RUN)).filter((m) => m.submittedAt >= staleBefore)
    let applied = 0
    for (let i = 0; i < due.length; i += IDS_PER_CALL) {
      if (i > 0) await sleep(CALL_SPACING_MS)
      const ids = due.slice(i, i + IDS_PER_CALL).map((m) => m.id)
      const transitions = (await deps.infobip.logs(ids)).flatMap((report) => {
        const parsed = parseReport(report)
        return parsed.kind === 'transition' ? [{ ...parsed.transition, source: 'reconcile' as const }] : []
      })
      if (transitions.length === 0) continue
      applied += (await deps.apply(transitions)).filter((r) => r.result === 'applied').length
    }
    deps.log.info({ looked: due.length, applied, stale }, 'reconciled messages without a final report')
    return { looked: due.length, applied, stale }
  }
}
