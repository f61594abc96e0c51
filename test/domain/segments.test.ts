import t from 'tap'
import { deepStrictEqual } from 'node:assert/strict'
import fc from 'fast-check'
import { analyzeText, MAX_SEGMENTS } from '../../src/domain/segments.js'

const a = (n: number): string => 'a'.repeat(n)
// 'ж' is outside GSM-7: one of them makes the whole text UCS-2.
const zh = (n: number): string => 'ж'.repeat(n)
const EMOJI = '😀' // two UTF-16 code units

const BASIC = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' + '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà'
const EXTENSION = '\f^{}\\[~]|€'

t.test('empty text has no segments', async (t) => {
  t.same(analyzeText(''), { encoding: 'GSM-7', segments: 0, units: 0 })
})

t.test('GSM-7 alphabet', async (t) => {
  t.equal(BASIC.length, 127)
  for (const ch of BASIC) t.same(analyzeText(ch), { encoding: 'GSM-7', segments: 1, units: 1 }, JSON.stringify(ch))
  for (const ch of EXTENSION) t.same(analyzeText(ch), { encoding: 'GSM-7', segments: 1, units: 2 }, JSON.stringify(ch))
  for (const ch of ['ç', 'á', '`', '\t', '\u00a0', '\u001b', 'ж', '’', '“', 'e\u0301', EMOJI]) {
    t.equal(analyzeText(ch).encoding, 'UCS-2', JSON.stringify(ch))
  }
})

t.test('GSM-7 single and multipart boundaries', async (t) => {
  t.same(analyzeText(a(160)), { encoding: 'GSM-7', segments: 1, units: 160 })
  t.same(analyzeText(a(161)), { encoding: 'GSM-7', segments: 2, units: 161 })
  t.same(analyzeText(a(306)), { encoding: 'GSM-7', segments: 2, units: 306 })
  t.same(analyzeText(a(307)), { encoding: 'GSM-7', segments: 3, units: 307 })
})

t.test('€ and other extension characters count double', async (t) => {
  t.same(analyzeText('€'.repeat(80)), { encoding: 'GSM-7', segments: 1, units: 160 })
  t.same(analyzeText('€'.repeat(81)), { encoding: 'GSM-7', segments: 2, units: 162 })
  t.same(analyzeText('Price: 5€ {x}'), { encoding: 'GSM-7', segments: 1, units: 16 })
})

t.test('extension character around the single-segment limit', async (t) => {
  // as the 159th character: septets 159–160
  t.same(analyzeText(a(158) + '€'), { encoding: 'GSM-7', segments: 1, units: 160 })
  // as the 160th character: septets 160–161
  t.same(analyzeText(a(159) + '€'), { encoding: 'GSM-7', segments: 2, units: 161 })
  // as the 161st character
  t.same(analyzeText(a(160) + '€'), { encoding: 'GSM-7', segments: 2, units: 162 })
  t.same(analyzeText(a(159) + '{'), { encoding: 'GSM-7', segments: 2, units: 161 })
})

t.test('an escape pair is never split across segments', async (t) => {
  // fits exactly: septets 152–153 of segment 1
  t.same(analyzeText(a(151) + '€' + a(153)), { encoding: 'GSM-7', segments: 2, units: 306 })
  // one septet left in segment 1: the pair moves to segment 2, pushing the last septet into segment 3
  t.same(analyzeText(a(152) + '€' + a(152)), { encoding: 'GSM-7', segments: 3, units: 306 })
  t.same(analyzeText(a(152) + '€' + a(151)), { encoding: 'GSM-7', segments: 2, units: 305 })
  // 76 pairs fill 152 septets; the 77th starts segment 2
  t.same(analyzeText('€'.repeat(153)), { encoding: 'GSM-7', segments: 3, units: 306 })
  t.same(analyzeText('€'.repeat(152)), { encoding: 'GSM-7', segments: 2, units: 304 })
})

t.test('UCS-2 single and multipart boundaries', async (t) => {
  t.same(analyzeText(zh(70)), { encoding: 'UCS-2', segments: 1, units: 70 })
  t.same(analyzeText(zh(71)), { encoding: 'UCS-2', segments: 2, units: 71 })
  t.same(analyzeText(zh(134)), { encoding: 'UCS-2', segments: 2, units: 134 })
  t.same(analyzeText(zh(135)), { encoding: 'UCS-2', segments: 3, units: 135 })
})

t.test('emoji count as two units and are never split', async (t) => {
  t.same(analyzeText(EMOJI), { encoding: 'UCS-2', segments: 1, units: 2 })
  t.same(analyzeText(zh(68) + EMOJI), { encoding: 'UCS-2', segments: 1, units: 70 })
  t.same(analyzeText(zh(69) + EMOJI), { encoding: 'UCS-2', segments: 2, units: 71 })
  // fits exactly: units 66–67 of segment 1
  t.same(analyzeText(zh(65) + EMOJI + zh(67)), { encoding: 'UCS-2', segments: 2, units: 134 })
  // one unit left in segment 1: the pair moves on, pushing the last unit into segment 3
  t.same(analyzeText(zh(66) + EMOJI + zh(66)), { encoding: 'UCS-2', segments: 3, units: 134 })
  t.same(analyzeText(EMOJI.repeat(67)), { encoding: 'UCS-2', segments: 3, units: 134 })
  // a lone surrogate is one unit
  t.same(analyzeText(zh(66) + '\ud83d' + zh(67)), { encoding: 'UCS-2', segments: 2, units: 134 })
  t.same(analyzeText(zh(133) + '\ud83d'), { encoding: 'UCS-2', segments: 2, units: 134 })
})

t.test('one non-GSM character switches the whole text to UCS-2', async (t) => {
  t.same(analyzeText(a(159) + 'ж'), { encoding: 'UCS-2', segments: 3, units: 160 })
  t.same(analyzeText('ж' + a(69)), { encoding: 'UCS-2', segments: 1, units: 70 })
  t.same(analyzeText('Grüße, François'), { encoding: 'UCS-2', segments: 1, units: 15 })
  // extension characters are single units in UCS-2
  t.same(analyzeText('€'.repeat(69) + 'ж'), { encoding: 'UCS-2', segments: 1, units: 70 })
})

t.test('the 25-segment limit', async (t) => {
  t.equal(MAX_SEGMENTS, 25)
  t.same(analyzeText(a(25 * 153)), { encoding: 'GSM-7', segments: 25, units: 3825 })
  t.same(analyzeText(a(25 * 153 + 1)), { encoding: 'GSM-7', segments: 26, units: 3826 })
  t.same(analyzeText(zh(25 * 67)), { encoding: 'UCS-2', segments: 25, units: 1675 })
  t.same(analyzeText(zh(25 * 67 + 1)), { encoding: 'UCS-2', segments: 26, units: 1676 })
})

// A deliberately naive model: split into characters, then pack greedily.
function model(text: string): { encoding: string; segments: number; units: number } {
  const chars = Array.from(text)
  const gsm = chars.every((c) => BASIC.includes(c) || EXTENSION.includes(c))
  const costs = chars.map((c) => (gsm ? (EXTENSION.includes(c) ? 2 : 1) : c.length))
  const units = costs.reduce((sum, c) => sum + c, 0)
  const [single, multi] = gsm ? [160, 153] : [70, 67]
  let segments = units === 0 ? 0 : 1
  if (units > single) {
    let fill = 0
    for (const cost of costs) {
      if (fill + cost > multi) {
        segments++
        fill = 0
      }
      fill += cost
    }
  }
  return { encoding: gsm ? 'GSM-7' : 'UCS-2', segments, units }
}

const gsmChar = fc.constantFrom(...BASIC, ...EXTENSION)
const anyChar = fc.oneof({ arbitrary: gsmChar, weight: 20 }, { arbitrary: fc.constantFrom('ж', 'ç', '’', EMOJI, '🇨🇭'), weight: 1 })
const text = (char: fc.Arbitrary<string>) => fc.array(char, { maxLength: 400 }).map((cs) => cs.join(''))

t.test('property: agrees with a naive model', async (t) => {
  fc.assert(
    fc.property(text(anyChar), (s) => deepStrictEqual(analyzeText(s), model(s))),
    { numRuns: 500 },
  )
  t.pass('checked')
})

t.test('property: segments never decrease when text is appended', async (t) => {
  fc.assert(
    fc.property(text(anyChar), text(anyChar), (s, extra) => {
      return analyzeText(s + extra).segments >= analyzeText(s).segments
    }),
    { numRuns: 500 },
  )
  t.pass('checked')
})

t.test('property: a GSM-7 text is one segment iff it has at most 160 septets', async (t) => {
  fc.assert(
    fc.property(
      text(gsmChar).filter((s) => s.length > 0),
      (s) => {
        const r = analyzeText(s)
        return r.encoding === 'GSM-7' && (r.segments === 1) === r.units <= 160
      },
    ),
    { numRuns: 500 },
  )
  t.pass('checked')
})
