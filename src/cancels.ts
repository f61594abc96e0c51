import type { AfterChanges } from './changes.js'
import { madeChange } from './changes.js'
import { STATUS } from './domain/status.js'
import type { Partitioned, SendJob } from './queues.js'
import type { CancelResult, MessageStore } from './store/message-store.js'

/** Ids per page of a campaign cancel: ten CANCEL calls in one pipeline. */
const PAGE = 1000

/**
 * Cancelling (docs/api.md#cancel): the CANCEL script decides, then what follows a change (a
 * callback, the metrics), and a scheduled message's delayed send job is removed — or, when the job
 * also sends other messages, the message is taken out of it.
 */
export class Cancels {
  constructor(
    private readonly store: MessageStore,
    private readonly sendQueue: Partitioned<SendJob>,
    private readonly afterChanges: AfterChanges,
  ) {}

  async cancel(tenant: string, ids: string[]): Promise<CancelResult[]> {
    const results = await this.store.cancel(tenant, ids)
    const changes = results.flatMap((r, i) => (r.result === 'canceled' ? [madeChange(ids[i]!, r.change, { status: STATUS.CANCELED, source: 'api' })] : []))
    if (changes.length > 0)
      await this.afterChanges(
        changes.map(([t]) => t),
        changes.map(([, r]) => r),
      )
    const jobs = new Map<string, Set<string>>()
    results.forEach((r, i) => {
      if (r.result === 'canceled' && r.job) jobs.set(r.job, (jobs.get(r.job) ?? new Set()).add(ids[i]!))
    })
    for (const [jobId, canceled] of jobs) await this.#dropFromJob(jobId, canceled)
    return results
  }

  /** Every QUEUED message of the tenant with this reference, a page at a time, whatever their number. */
  async byReference(tenant: string, reference: string): Promise<{ canceled: number; notCanceled: number }> {
    const counts = { canceled: 0, notCanceled: 0 }
    let after: string | undefined
    for (;;) {
      const ids = await this.store.idsByReference(tenant, reference, after, PAGE)
      if (ids.length === 0) return counts
      for (const r of await this.cancel(tenant, ids)) {
        if (r.result === 'canceled') counts.canceled++
        else if (r.result === 'refused') counts.notCanceled++
      }
      after = ids[ids.length - 1]
    }
  }

  /** A delayed job is not left to fire for nothing: removed when all it sends is cancelled, else trimmed. */
  async #dropFromJob(jobId: string, canceled: Set<string>): Promise<void> {
    const job = await this.sendQueue.getJob(jobId)
    if (!job || !(await job.isDelayed())) return
    const rest = job.data.ids.filter((id) => !canceled.has(id))
    // A job that fires anyway only finds cancelled messages (the claim skips them): a failed removal is harmless.
    await (rest.length === 0 ? job.remove() : job.updateData({ ...job.data, ids: rest })).catch(() => {})
  }
}
