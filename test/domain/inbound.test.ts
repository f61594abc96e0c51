import t from 'tap'
import { firstWord, keywords, parseInbound, tenantsFor } from '../../src/domain/inbound.js'
import { listOf, loadConfig } from '../../src/config.js'

const config = loadConfig({})
const words = keywords(listOf(config.OPT_OUT_KEYWORDS), listOf(config.OPT_IN_KEYWORDS))
const mo = (text: unknown, extra: Record<string, unknown> = {}) => ({ messageId: 'm1', from: '41793026727', to: '41790000000', text, ...extra })

t.test('the first word, trimmed, case-insensitive, without the punctuation around it, decides', async (t) => {
  const cases: [string, string][] = [
    ['STOP', 'opt_out'],
    ['  stop  ', 'opt_out'],
    ['Stop please', 'opt_out'],
    ['Stop.', 'opt_out'],
    ['"STOP!"', 'opt_out'],
    ['stopall', 'opt_out'],
    ['Unsubscribe\nnow', 'opt_out'],
    ['cancel', 'opt_out'],
    ['END', 'opt_out'],
    ['quit', 'opt_out'],
    ['start', 'opt_in'],
    ['UNSTOP', 'opt_in'],
    ['please stop', 'none'],
    ['STOPPED', 'none'],
    ['', 'none'],
    ['   ', 'none'],
    ['🙂', 'none'],
  ]
  for (const [text, action] of cases) t.match(parseInbound(mo(text), words), { kind: 'message', action }, JSON.stringify(text))
  t.equal(firstWord('  Stop. now'), 'STOP')
})

t.test('the text is read, not cleanText (the text without Infobip’s keyword); keyword stands in for a missing text', async (t) => {
  t.match(parseInbound(mo('STOP please', { cleanText: 'please', keyword: 'STOP' }), words), { action: 'opt_out', word: 'STOP' })
  t.match(parseInbound(mo(undefined, { cleanText: '', keyword: 'STOP' }), words), { action: 'opt_out' })
  t.match(parseInbound(mo(null, { keyword: null }), words), { action: 'none' })
})

t.test('the sender is stored as suppression lists store numbers; results without messageId or from are invalid', async (t) => {
  t.match(parseInbound(mo('STOP', { from: '+41 79 302 67 27' }), words), { from: '41793026727' })
  t.match(parseInbound(mo('STOP', { from: '0041793026727' }), words), { from: '41793026727' })
  t.match(parseInbound(mo('STOP', { from: '12345' }), words), { from: '12345' }, 'a short code, as digits')
  for (const raw of [
    null,
    'STOP',
    [],
    { from: '41793026727', text: 'STOP' },
    mo('STOP', { messageId: 7 }),
    mo('STOP', { from: undefined }),
    mo('STOP', { from: 'InfoSMS' }),
    mo(7),
  ]) {
    t.same(parseInbound(raw, words), { kind: 'invalid' }, JSON.stringify(raw))
  }
})

t.test('an opt-out keyword wins over the same word among the opt-in keywords', async (t) => {
  t.match(parseInbound(mo('go'), keywords(['go'], ['GO'])), { action: 'opt_out' })
})

t.test('tenants: the owners of the number by inboundNumbers or numeric allowedSenders, else every tenant', async (t) => {
  const tenants = [
    { name: 'default' },
    { name: 'acme', inboundNumbers: ['41790000000'], allowedSenders: ['ACME'] },
    { name: 'beta', allowedSenders: ['BETA', '+41790000099'] },
    { name: 'gamma', inboundNumbers: ['41790000000'] },
  ]
  t.same(tenantsFor('41790000000', tenants), ['acme', 'gamma'])
  t.same(tenantsFor('+41 79 000 00 99', tenants), ['beta'])
  t.same(tenantsFor('41780000000', tenants), ['default', 'acme', 'beta', 'gamma'])
  t.same(tenantsFor(undefined, tenants), ['default', 'acme', 'beta', 'gamma'])
  t.same(tenantsFor('ACME', tenants), ['default', 'acme', 'beta', 'gamma'], 'an alphanumeric sender owns no number')
})

t.test('the keyword lists: comma-separated words; a list with spaces inside a word stops start-up', async (t) => {
  t.same(listOf(loadConfig({ OPT_OUT_KEYWORDS: ' STOP , ARRET ' }).OPT_OUT_KEYWORDS), ['STOP', 'ARRET'])
  t.throws(() => loadConfig({ OPT_OUT_KEYWORDS: 'STOP NOW' }), { message: /^Invalid configuration: OPT_OUT_KEYWORDS / })
  t.throws(() => loadConfig({ OPT_IN_KEYWORDS: 'START,,GO' }), { message: /^Invalid configuration: OPT_IN_KEYWORDS / })
})
