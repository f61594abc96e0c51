import type { JobsOptions, Queue } from 'bullmq'
import { callbackJobs, type CallbackJob } from '../src/callbacks.js'
import type { MessageStore } from '../src/store/message-store.js'
import type { Transition, TransitionResult } from '../src/domain/message.js'

export type ApplyTransitions = (transitions: Transition[]) => Promise<TransitionResult[]>

/**
 * The one way workers change statuses: the transition script (one pipeline for the whole list),
 * then what follows an applied change — a callback job for messages with a callbackUrl (job id =
 * event id, so a repeat adds nothing) and the metrics.
 */
export function makeApplyTransitions(deps: {
  store: MessageStore
  callbackQueue: Queue<CallbackJob>
  callbackOptions: JobsOptions
  onApplied?: (transitions: Transition[], results: TransitionResult[]) => void
}): ApplyTransitions {
  return async function apply(transitions) {
    if (transitions.length === 0) return []
    const results = await deps.store.transition(transitions)
    deps.onApplied?.(transitions, results)
    const jobs = callbackJobs(transitions, results, deps.callbackOptions)
    if (jobs.length > 0) await deps.callbackQueue.addBulk(jobs)
    return results
  }
}
