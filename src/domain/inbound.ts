import { TypeCompiler } from '@sinclair/typebox/compiler'
import { InboundMessage } from '../schemas/infobip.js'
import type { Tenant } from '../tenants.js'
import { normalizePhone } from './phone.js'

/**
 * Inbound SMS → opt-outs and opt-ins (docs/api.md#infobip-inbound-sms). Pure: the inbound worker
 * (workers/inbound.ts) applies what this returns.
 */

/** `sms_inbound_total{action}`: what an inbound SMS did to its sender's suppression. */
export const INBOUND_ACTIONS = ['opt_out', 'opt_in', 'none'] as const
export type InboundAction = (typeof INBOUND_ACTIONS)[number]

/** OPT_OUT_KEYWORDS and OPT_IN_KEYWORDS, upper-cased. */
export interface Keywords {
  optOut: ReadonlySet<string>
  optIn: ReadonlySet<string>
}

export const keywords = (optOut: readonly string[], optIn: readonly string[]): Keywords => ({
  optOut: new Set(optOut.map((k) => k.toUpperCase())),
  optIn: new Set(optIn.map((k) => k.toUpperCase())),
})

/**
 * The first word of a text, upper-cased, without the punctuation around it: "Stop." and "STOP!" are
 * the STOP that their sender meant.
 */
export function firstWord(text: string): string {
  const word = text.trim().split(/\s+/, 1)[0] ?? ''
  return word.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '').toUpperCase()
}

/** An opt-out word wins over an opt-in word listed in both: sending to someone who said STOP is the worse mistake. */
export function inboundAction(word: string, { optOut, optIn }: Keywords): InboundAction {
  if (optOut.has(word)) return 'opt_out'
  if (optIn.has(word)) return 'opt_in'
  return 'none'
}

const digits = (s: string) => s.replace(/\D/g, '')

/**
 * The tenants whose lists an inbound SMS to `to` affects: those whose `inboundNumbers`, or numeric
 * `allowedSenders`, include it (compared as digits); every tenant when none does (a shared number).
 */
export function tenantsFor(to: string | undefined, tenants: readonly Tenant[]): string[] {
  const number = to === undefined ? '' : digits(to)
  const owns = (t: Tenant) =>
    number !== '' && [...(t.inboundNumbers ?? []), ...(t.allowedSenders ?? []).filter((s) => /^\+?\d+$/.test(s))].some((n) => digits(n) === number)
  const owners = tenants.filter(owns)
  return (owners.length > 0 ? owners : tenants).map((t) => t.name)
}

const checkInbound = TypeCompiler.Compile(InboundMessage)

export type ParsedInbound =
  /** Not an object, or without a string `messageId` and a `from` with digits. */
  | { kind: 'invalid' }
  | {
      kind: 'message'
      messageId: string
      /** Normalised as suppression lists store numbers (digits, E.164 without '+'). */
      from: string
      to: string | undefined
      /** The first word, upper-cased: part of the message's text unless it is a keyword (never logged then). */
      word: string
      action: InboundAction
    }

/**
 * One result of an `MO_JSON_2` batch. The first word is read from `text`: `cleanText` is the text
 * with Infobip's keyword taken out (docs/infobip.md#inbound-messages), "STOP please" → "please", so
 * it would hide the very word we look for. Without `text`, Infobip's `keyword` stands in.
 */
export function parseInbound(raw: unknown, words: Keywords): ParsedInbound {
  if (!checkInbound.Check(raw)) return { kind: 'invalid' }
  const { messageId, from, to, text, keyword } = raw
  // A number we cannot place (a short code, a national notation) is still that sender's, as digits.
  const sender = normalizePhone(from) ?? digits(from)
  if (sender === '') return { kind: 'invalid' }
  const word = firstWord(text ?? keyword ?? '')
  return { kind: 'message', messageId, from: sender, to: to ?? undefined, word, action: inboundAction(word, words) }
}
