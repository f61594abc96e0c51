import type { JobsOptions } from 'bullmq'
import { callbackJobs, type CallbackJob } from './callbacks.js'
import type { Partitioned } from './queues.js'
import type { AppliedChange, Transition, TransitionResult } from './domain/message.js'
import type { MessageStore } from './store/message-store.js'
import { tracedTransition } from './tracing.js'

export type ApplyTransitions = (transitions: Transition[]) => Promise<TransitionResult[]>
/** What follows status changes that a script has already written: callbacks and metrics. */
export type AfterChanges = (transitions: Transition[], results: TransitionResult[]) => Promise<void>

export interface ChangeHooks {
  callbackQueue: Partitioned<CallbackJob>
  callbackOptions: JobsOptions
  onApplied?: (transitions: Transition[], results: TransitionResult[]) => void
}

/**
 * What follows an applied change, whichever script made it (a report's transition, a claim that
 * found the number suppressed, a cancel): a callback job for messages with a callbackUrl (job id =
 * event id, so a repeat adds nothing) and the metrics.
 */
export function makeAfterChanges(hooks: ChangeHooks): AfterChanges {
  return async function after(transitions, results) {
    hooks.onApplied?.(transitions, results)
    const jobs = callbackJobs(transitions, results, hooks.callbackOptions)
    if (jobs.length > 0) await hooks.callbackQueue.addBulk(jobs)
  }
}

/** The one way workers change statuses: the transition script (one pipeline for the whole list), then `makeAfterChanges`. */
export function makeApplyTransitions(deps: ChangeHooks & { store: MessageStore }): ApplyTransitions {
  const after = makeAfterChanges(deps)
  return async function apply(transitions) {
    if (transitions.length === 0) return []
    return tracedTransition(transitions, async () => {
      const results = await deps.store.transition(transitions)
      await after(transitions, results)
      return results
    })
  }
}

/** A change a script made by itself (CLAIM, CANCEL), as the transition and result `makeAfterChanges` takes. */
export function madeChange(id: string, change: AppliedChange, transition: Omit<Transition, 'id'>): [Transition, TransitionResult] {
  return [
    { id, ...transition },
    { result: 'applied', ...change },
  ]
}
