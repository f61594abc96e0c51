import t from 'tap'
import { fingerprint, parseBatch, parseReport } from '../../src/domain/reports.js'
import { ERRORS, STATUSES, v2Report, v3Report } from '../helpers/reports.js'

const transitionOf = (raw: unknown) => {
  const parsed = parseReport(raw)
  if (parsed.kind !== 'transition') throw new Error(`expected a transition, got ${parsed.kind}`)
  return parsed.transition
}

t.test('a v3 report becomes a dlr transition with the fields the message resource shows under infobip (docs/api.md#the-message-resource)', async (t) => {
  const report = v3Report('msg_1')
  t.same(transitionOf(report), {
    id: 'msg_1',
    status: 'DELIVERED',
    source: 'dlr',
    infobipStatus: 'DELIVERED_TO_HANDSET',
    fingerprint: '5|0|2026-11-28T10:00:04.870+0000',
    infobip: {
      messageId: 'msg_1',
      bulkId: report.bulkId,
      status: report.status,
      error: report.error,
      price: report.price,
      sentAt: report.sentAt,
      doneAt: report.doneAt,
      messageCount: 1,
      mccMnc: '22801',
    },
  })
})

t.test('a v2 report: smsCount becomes messageCount; no number, sender or callbackData is kept', async (t) => {
  const { infobip } = transitionOf(v2Report('msg_2', STATUSES.UNDELIVERABLE_NOT_DELIVERED, { smsCount: 3 }))
  t.equal(infobip!.messageCount, 3)
  t.same(infobip!.error, ERRORS.EC_ABSENT_SUBSCRIBER)
  for (const field of ['to', 'from', 'sender', 'callbackData', 'smsCount', 'entityId']) t.notOk(field in infobip!, field)
  // The same report in either shape keeps the same infobip.*, down to the order of its fields.
  t.equal(JSON.stringify(transitionOf(v2Report('m')).infobip), JSON.stringify(transitionOf(v3Report('m')).infobip))
})

t.test('statuses are decided on numeric ids only (docs/statuses.md#transition-rules)', async (t) => {
  const cases: [groupId: number, id: number, expected: string][] = [
    [0, 0, 'PENDING'],
    [1, 7, 'PENDING'],
    [1, 26, 'PENDING'],
    [2, 9, 'UNDELIVERABLE'],
    [3, 2, 'SENT'],
    [3, 5, 'DELIVERED'],
    [3, 99, 'DELIVERED'],
    [4, 15, 'EXPIRED'],
    [5, 6, 'REJECTED'],
  ]
  for (const [groupId, id, expected] of cases) {
    // Names that contradict the ids change nothing.
    const status = { groupId, id, groupName: 'Ok', name: 'WHATEVER' }
    t.equal(transitionOf({ messageId: 'm', status }).status, expected, `group ${groupId} id ${id}`)
  }
  for (const status of [{ groupId: 6, id: 1 }, { groupId: -1 }, { id: 5, name: 'DELIVERED_TO_HANDSET' }, {}]) {
    t.equal(parseReport({ messageId: 'm', status }).kind, 'unknown-status', JSON.stringify(status))
  }
})

t.test('the fingerprint (kept per message) is status.id|error.id|doneAt, absent parts empty', async (t) => {
  t.equal(transitionOf({ messageId: 'm', status: { groupId: 1, id: 7 } }).fingerprint, '7||')
  t.equal(transitionOf({ messageId: 'm', status: { groupId: 1, id: 7 }, error: null, doneAt: null }).fingerprint, '7||')
  t.equal(fingerprint(5, 0, 'x'), '5|0|x')
  // A different doneAt or error is a different report.
  t.not(transitionOf(v3Report('m', STATUSES.DELIVERED_TO_HANDSET, { doneAt: 'later' })).fingerprint, transitionOf(v3Report('m')).fingerprint)
})

t.test('only missing or mistyped deciding fields make a report invalid; other fields pass through', async (t) => {
  const invalid: unknown[] = [
    null,
    'DELIVERED',
    42,
    [v3Report('m')],
    {},
    { status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: 'm' },
    { messageId: '', status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: 123, status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: 'x'.repeat(201), status: STATUSES.DELIVERED_TO_HANDSET },
    { messageId: 'm', status: 'DELIVERED' },
    { messageId: 'm', status: null },
    { messageId: 'm', status: { groupId: '3', id: 5 } },
    { messageId: 'm', status: { groupId: 3, id: 5.5 } },
    { messageId: 'm', status: { groupId: 3, id: 5, name: 5 } },
    { messageId: 'm', status: { groupId: 3, id: 5 }, error: 'NO_ERROR' },
    { messageId: 'm', status: { groupId: 3, id: 5 }, error: { id: '0' } },
    { messageId: 'm', status: { groupId: 3, id: 5 }, doneAt: 1732788000000 },
  ]
  for (const raw of invalid) t.equal(parseReport(raw).kind, 'invalid', JSON.stringify(raw))

  const odd = transitionOf(v3Report('m', STATUSES.DELIVERED_TO_HANDSET, { price: 'free', messageCount: null, mccMnc: 22801, surprise: true }))
  t.equal(odd.infobip!.price, 'free')
  t.equal(odd.infobip!.mccMnc, 22801)
  t.notOk('messageCount' in odd.infobip!)
})

t.test('parseBatch keeps the good reports in order and counts the rest', async (t) => {
  const batch = parseBatch([v3Report('a'), null, { messageId: 'b', status: { groupId: 9 } }, v2Report('c', STATUSES.DELIVERED_TO_OPERATOR), { messageId: 'd' }])
  t.same(
    batch.transitions.map((tr) => [tr.id, tr.status]),
    [
      ['a', 'DELIVERED'],
      ['c', 'SENT'],
    ],
  )
  t.same(
    batch.reports.map((r) => r.messageId),
    ['a', 'c'],
  )
  t.equal(batch.invalid, 2)
  t.equal(batch.unknownStatus, 1)
})
