import t from 'tap'
import { maskPhone, normalizePhone } from '../../src/domain/phone.js'

t.test('common international notations normalise to E.164 digits', async (t) => {
  for (const input of [
    '+41 79 302 67 27',
    '+41793026727',
    '+41-79-302-67-27',
    '+41.79.302.67.27',
    '+41 79/302 67 27',
    '(+41) 79 302 67 27',
    '+41 (0) 79 302 67 27',
    '+41 (79) 302-67-27',
    '0041793026727',
    '0041 79 302 67 27',
    '00 41 (0)79 302 67 27',
    '41793026727',
    '41 79 302 67 27',
    ' +41 79 302 67 27 ',
  ]) {
    t.equal(normalizePhone(input), '41793026727', input)
  }
})

t.test('simulator test numbers of several countries are valid', async (t) => {
  for (const number of [
    '41793020001', // CH
    '4915112340002', // DE
    '33612340003', // FR
    '436641230004', // AT
    '31612340005', // NL
    '393471230006', // IT
    '34612340007', // ES
    '447911230008', // GB
    '12025550009', // US
    '41793020010', // CH
    '41793026727', // CH, default
    '4915112345678', // DE, default
  ]) {
    t.equal(normalizePhone(`+${number}`), number, number)
  }
  for (let i = 1; i <= 10; i++) {
    const number = `4179302${String(i).padStart(4, '0')}`
    t.equal(normalizePhone(number), number, number)
  }
})

t.test('US 555 numbers are valid, the UK drama range is not', async (t) => {
  t.equal(normalizePhone('+1 202 555 0001'), '12025550001')
  t.equal(normalizePhone('+1 (202) 555-0123'), '12025550123')
  t.equal(normalizePhone('+44 7700 900001'), undefined)
  t.equal(normalizePhone('+44 7700 900999'), undefined)
})

t.test('invalid input is rejected', async (t) => {
  for (const input of [
    '',
    ' ',
    '+',
    '00',
    '0',
    '079 302 67 27', // national notation, no country code
    '0793026727',
    '+41 79 302 67 2', // too short
    '+41 79 302 67 277', // too long for CH
    '+41 12 345 67 89', // no such range
    '+999 123456789', // no such country code
    '+41 79 302 67 27 ext 5',
    '+41 79 302 67 2a',
    'tel:+41793026727',
    'abc',
    '++41793026727',
    '41+793026727',
    '+41 79 302 67 27 +1',
    '+41\u066779 302 67 27', // a non-ASCII digit
    '9'.repeat(33),
    '1'.repeat(10_000),
  ]) {
    t.equal(normalizePhone(input), undefined, JSON.stringify(input.slice(0, 40)))
  }
})

t.test('input longer than 32 characters is refused, 32 is still parsed', async (t) => {
  const padded = '+41 79 302 67 27'.padEnd(32, ' ')
  t.equal(padded.length, 32)
  t.equal(normalizePhone(padded), '41793026727')
  t.equal(normalizePhone(padded + ' '), undefined)
})

t.test('maskPhone keeps at most the last 4 digits', async (t) => {
  t.equal(maskPhone('41793026727'), '*******6727')
  t.equal(maskPhone('12345'), '*2345')
  t.equal(maskPhone('1234'), '****')
  t.equal(maskPhone('12'), '**')
  t.equal(maskPhone(''), '')
})
