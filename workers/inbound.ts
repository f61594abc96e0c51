import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import { parseInbound, tenantsFor, type InboundAction, type Keywords } from '../src/domain/inbound.js'
import { maskPhone } from '../src/domain/phone.js'
import { inboundResults, type InboundJob } from '../src/queues.js'
import type { MessageStore } from '../src/store/message-store.js'
import type { Tenant } from '../src/tenants.js'

/** What one job's messages did: the actions (counted in `sms_inbound_total`), and what was skipped. */
export type InboundCounts = Record<InboundAction, number> & { repeated: number; invalid: number }

export interface InboundDeps {
  store: MessageStore
  log: Logger
  keywords: Keywords
  /** Every tenant: whose `inboundNumbers` or numeric `allowedSenders` own the number an SMS was sent to. */
  tenants: readonly Tenant[]
  onAction?: (action: InboundAction) => void
}

/**
 * The inbound processor (docs/api.md#infobip-inbound-sms): each message of one POST, in order, puts
 * its sender on the suppression lists of the tenants that own the number it was sent to, takes it off
 * them, or does nothing, by its first word.
 *
 * A message is applied before it is marked as seen, never the other way round: a crash between the
 * two only means that the job's next attempt applies it again, which changes nothing (suppress and
 * unsuppress are idempotent), whereas marking first could lose an opt-out. A message already marked
 * (Infobip posted it again, or an earlier attempt got that far) is skipped and counts nothing.
 */
export function makeInboundProcessor(deps: InboundDeps) {
  const { store, log, keywords } = deps

  return async function processInbound(job: Job<InboundJob>): Promise<InboundCounts> {
    const counts: InboundCounts = { opt_out: 0, opt_in: 0, none: 0, repeated: 0, invalid: 0 }
    for (const raw of inboundResults(job.data)) {
      const message = parseInbound(raw, keywords)
      if (message.kind === 'invalid') {
        counts.invalid++
        continue
      }
      const { messageId, from, action } = message
      if (await store.seenInbound(messageId)) {
        counts.repeated++
        continue
      }
      const tenants = tenantsFor(message.to, deps.tenants)
      if (action === 'opt_out') await store.suppress(tenants, from, { reason: `inbound "${message.word}"`, source: 'inbound' })
      else if (action === 'opt_in') await store.unsuppress(tenants, from)
      // Two jobs may carry the same message (Infobip retried a POST whose 200 it missed) and both
      // apply it: the one that marks it first counts it.
      if (!(await store.firstInbound(messageId))) {
        counts.repeated++
        continue
      }
      counts[action]++
      deps.onAction?.(action)
      // The first word is logged only when it is a keyword: anything else is the message's text.
      if (action !== 'none') log.info({ jobId: job.id, messageId, from: maskPhone(from), action, keyword: message.word, tenants }, 'inbound keyword applied')
    }
    log.info({ jobId: job.id, ...counts }, 'applied inbound messages')
    return counts
  }
}
