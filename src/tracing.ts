import { context, trace, type Attributes, type Span } from '@opentelemetry/api'
import { BullMQOtel } from 'bullmq-otel'
import type { Transition, TransitionResult } from './domain/message.js'

/**
 * What the service's own code adds to traces (docs/tracing.md). Only `@opentelemetry/api` is used
 * here: with tracing off no SDK is registered and every call below is the API's no-op.
 */

/** The tracer of the service's own spans, and BullMQ's producer and consumer spans. */
export const TRACER_NAME = 'sms-delivery-service'
const tracer = trace.getTracer(TRACER_NAME)

/** BullMQ's telemetry for every Queue and Worker: the producer's context travels in the job (docs/tracing.md#span-tree). */
export const queueTelemetry = (): BullMQOtel => new BullMQOtel({ tracerName: TRACER_NAME })

/**
 * Attribute names (docs/tracing.md#attributes). A message id is never secret; texts and numbers are
 * never recorded.
 */
export const ATTR = {
  messageId: 'sms.message_id',
  messageCount: 'sms.message_count',
  reportCount: 'sms.report_count',
  tenant: 'sms.tenant',
  status: 'sms.status',
  infobipStatus: 'sms.infobip_status',
  result: 'sms.result',
  source: 'sms.source',
} as const

/**
 * Adds to the active span (a request's, or the job's that BullMQ runs the processor in). The message
 * id goes on only when the span is about one message; a span about several says how many, and each
 * of them has a `status change` span of its own.
 */
export function annotate(attributes: Attributes, messages?: readonly (string | { id: string })[]): void {
  const span = trace.getActiveSpan()
  if (!span?.isRecording()) return
  span.setAttributes(attributes)
  if (!messages) return
  const [only] = messages
  if (messages.length === 1 && only !== undefined) span.setAttribute(ATTR.messageId, typeof only === 'string' ? only : only.id)
  else span.setAttribute(ATTR.messageCount, messages.length)
}

/**
 * `transition`: one atomic application of status changes (the transition script and the callback
 * jobs it leads to), with one `status change` span per message under it, searchable by
 * `sms.message_id`: the link between a message's send and its delivery report (docs/tracing.md#links).
 */
export async function tracedTransition(transitions: Transition[], apply: () => Promise<TransitionResult[]>): Promise<TransitionResult[]> {
  return tracer.startActiveSpan('transition', { attributes: { [ATTR.messageCount]: transitions.length } }, async (span) => {
    try {
      const start = Date.now()
      const results = await apply()
      if (span.isRecording()) statusChanges(span, transitions, results, start)
      return results
    } finally {
      span.end()
    }
  })
}

function statusChanges(parent: Span, transitions: Transition[], results: TransitionResult[], startTime: number): void {
  const parentContext = trace.setSpan(context.active(), parent)
  for (const [i, t] of transitions.entries()) {
    const r = results[i]
    const attributes: Attributes = { [ATTR.messageId]: t.id, [ATTR.status]: t.status, [ATTR.source]: t.source, [ATTR.result]: r?.result ?? 'unknown' }
    if (t.infobipStatus) attributes[ATTR.infobipStatus] = t.infobipStatus
    if (r?.result === 'applied') attributes[ATTR.tenant] = r.tenant
    tracer.startSpan('status change', { startTime, attributes }, parentContext).end()
  }
}

/**
 * A URL as span attributes may show it: query values replaced (callback URLs may carry a client's
 * secret there, report URLs carry the DLR token), as OpenTelemetry's conventions ask for `url.full`.
 */
export function redactQuery(url: string): string {
  const at = url.indexOf('?')
  if (at < 0) return url
  const hash = url.indexOf('#', at)
  const query = url.slice(at + 1, hash < 0 ? undefined : hash)
  const names = query.split('&').map((pair) => `${pair.split('=')[0]}=REDACTED`)
  return `${url.slice(0, at)}?${names.join('&')}`
}
