import { parsePhoneNumberFromString } from 'libphonenumber-js/max'

/** Longer input is refused before parsing; no real notation of an E.164 number comes close. */
const MAX_INPUT_LENGTH = 32
// Digits, spaces and the usual separators; one optional '+' is checked separately.
const NOTATION = /^[\d\s()+\-./]+$/

/**
 * Normalises any common international notation (`+41 79 302 67 27`, `(+41) 79-302-67-27`,
 * `0041793026727`, `41793026727`) to E.164 digits without '+', e.g. `41793026727`. Returns undefined
 * unless libphonenumber's full ("max") metadata considers the number valid. Without '+' or '00' the
 * digits are read as international; a single leading 0 means national notation, which we cannot place.
 */
export function normalizePhone(input: string): string | undefined {
  if (input.length === 0 || input.length > MAX_INPUT_LENGTH || !NOTATION.test(input)) return undefined
  const digits = input.replace(/\D/g, '')
  const plus = input.indexOf('+')
  let international: string
  if (plus !== -1) {
    if (input.indexOf('+', plus + 1) !== -1 || /\d/.test(input.slice(0, plus))) return undefined
    international = digits
  } else if (digits.startsWith('00')) {
    international = digits.slice(2)
  } else if (digits.startsWith('0')) {
    return undefined
  } else {
    international = digits
  }
  if (international.length === 0) return undefined
  // libphonenumber drops a trunk prefix written after the country code (`+41 (0) 79 …`).
  const phone = parsePhoneNumberFromString(`+${international}`)
  // PhoneNumber.isValid() is isValidNumber() of the max build (which exports no standalone function).
  return phone?.isValid() ? phone.number.slice(1) : undefined
}

/** For logs: only the last 4 characters stay readable; 4 or fewer are masked entirely. */
export function maskPhone(digits: string): string {
  if (digits.length <= 4) return '*'.repeat(digits.length)
  return '*'.repeat(digits.length - 4) + digits.slice(-4)
}

const PHONE_FIELDS = new Set(['to', 'from', 'destination', 'sender'])

/** A copy of a report or job with every phone-like `to`/`from`/`destination`/`sender` masked (maskPhone). */
export function maskPhones(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskPhones)
  if (typeof value !== 'object' || value === null) return value
  const masked: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) {
    masked[key] =
      PHONE_FIELDS.has(key) && typeof field === 'string' && /^\+?[\d\s()./-]{5,}$/.test(field) ? maskPhone(field.replace(/\D/g, '')) : maskPhones(field)
  }
  return masked
}
