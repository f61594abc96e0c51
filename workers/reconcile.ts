import type { Logger } from 'pino'
import type { Transition, TransitionResult } from '../src/domain/message.js'
import { parseReport } from '../src/domain/reports.js'
import type { InfobipClient } from '../src/infobip/client.js'
import type { MessageStore } from '../src/store/message-store.js'

/** Infobip's logs keep messages for 48 hours; after that a message can no longer be looked up. */
export const LOGS_RETENTION_MS = 48 * 60 * 60 * 1000
/** Ids per logs call: 60 ids of 30 characters stay under the 2,048-character limit. */
const IDS_PER_CALL = 60
/** A bound on one run (the logs API's budget, 120 calls a minute, is shared with the send workers). */
export const MAX_CALLS_PER_RUN = 100

export interface ReconcileDeps {
  store: MessageStore
  infobip: InfobipClient
  log: Logger
  afterSeconds: number
  ttlDays: number
  /** Whose indexes to trim. */
  tenants: string[]
  apply: (transitions: Transition[]) => Promise<TransitionResult[]>
}

/**
 * Infobip pushes each report with retries but keeps no queue for us. The reconciler looks up, in
 * Infobip's logs API (never the read-once reports API), the messages still not final `afterSeconds`
 * after submission, and applies what it finds through the same transition script. Messages past the
 * logs' 48 hours leave its work list first, so that they cannot crowd out the ones that can still be
 * learnt about; each run goes on where the last one stopped. A run covers one shard (the partition
 * of its job). See docs/statuses.md#reconciliation.
 */
export function makeReconcileProcessor(deps: ReconcileDeps) {
  return async function reconcile(shard: number): Promise<{ looked: number; applied: number; stale: number }> {
    const now = Date.now()
    const retention = deps.ttlDays * 24 * 60 * 60 * 1000
    const stale = await deps.store.retireOpen(shard, now - LOGS_RETENTION_MS, now - retention)
    for (const tenant of deps.tenants) await deps.store.trimIndexes(tenant, shard, new Date(now - retention))

    const due = await deps.store.dueForReconcile(shard, now - deps.afterSeconds * 1000, IDS_PER_CALL * MAX_CALLS_PER_RUN)
    let applied = 0
    for (let i = 0; i < due.length; i += IDS_PER_CALL) {
      const transitions = (await deps.infobip.logs(due.slice(i, i + IDS_PER_CALL))).flatMap((report) => {
        const parsed = parseReport(report)
        return parsed.kind === 'transition' ? [{ ...parsed.transition, source: 'reconcile' as const }] : []
      })
      if (transitions.length === 0) continue
      applied += (await deps.apply(transitions)).filter((r) => r.result === 'applied').length
    }
    deps.log.info({ shard, looked: due.length, applied, stale }, 'reconciled messages without a final report')
    return { looked: due.length, applied, stale }
  }
}
