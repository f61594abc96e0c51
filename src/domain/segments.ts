/**
 * How many SMS segments a text costs (docs/api.md#send-one-message: more than MAX_SEGMENTS → 400). Runs on every API
 * request, so it is one loop over char codes against a table built once at start-up.
 */

export const MAX_SEGMENTS = 25

export type Encoding = 'GSM-7' | 'UCS-2'

export interface TextAnalysis {
  encoding: Encoding
  segments: number
  /** GSM-7: septets (an extension character counts 2). UCS-2: UTF-16 code units. */
  units: number
}

const GSM_SINGLE = 160
const GSM_MULTI = 153
const UCS2_SINGLE = 70
const UCS2_MULTI = 67

const NOT_GSM = 0
const BASIC = 1
const EXTENSION = 2

// GSM 03.38 default alphabet, in table order (0x1B, the escape, is not a character of its own).
const BASIC_CHARS = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' + '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà'
// Extension table: each is sent as escape + char, so costs 2 septets.
const EXTENSION_CHARS = '\f^{}\\[~]|€'

// Indexed by UTF-16 code unit; '€' (U+20AC) is the highest code point of either table.
const SEPTETS = new Uint8Array(0x20ad)
for (let i = 0; i < BASIC_CHARS.length; i++) SEPTETS[BASIC_CHARS.charCodeAt(i)] = BASIC
for (let i = 0; i < EXTENSION_CHARS.length; i++) SEPTETS[EXTENSION_CHARS.charCodeAt(i)] = EXTENSION

export function analyzeText(text: string): TextAnalysis {
  const length = text.length
  let units = 0
  // Multipart segmentation is tracked as we go, so a long GSM text needs a single pass.
  let segments = 1
  let fill = 0
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i)
    // Reading past the table's end gives undefined: not GSM either.
    const cost = SEPTETS[code] ?? NOT_GSM
    if (cost === NOT_GSM) return analyzeUcs2(text)
    units += cost
    // An escape pair that does not fit moves whole to the next segment.
    if (fill + cost > GSM_MULTI) {
      segments++
      fill = 0
    }
    fill += cost
  }
  if (units === 0) return { encoding: 'GSM-7', segments: 0, units: 0 }
  return { encoding: 'GSM-7', segments: units <= GSM_SINGLE ? 1 : segments, units }
}

function analyzeUcs2(text: string): TextAnalysis {
  const units = text.length
  if (units <= UCS2_SINGLE) return { encoding: 'UCS-2', segments: 1, units }
  let segments = 1
  let fill = 0
  for (let i = 0; i < units; i++) {
    const code = text.charCodeAt(i)
    let cost = 1
    // A surrogate pair (emoji and everything else outside the BMP) is never split across segments.
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < units) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        cost = 2
        i++
      }
    }
    if (fill + cost > UCS2_MULTI) {
      segments++
      fill = 0
    }
    fill += cost
  }
  return { encoding: 'UCS-2', segments, units }
}
