import { Type, type Static, type TSchema } from '@sinclair/typebox'

/** Infobip's maxBucketSize tops out at 2,000 reports per POST (docs/infobip.md#limits). */
export const DLR_MAX_RESULTS = 2000

const example = {
  bulkId: 'BULK-ID-123-xyz',
  messageId: 'msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F',
  to: '41793026727',
  sentAt: '2026-11-28T10:00:00.000+0000',
  doneAt: '2026-11-28T10:00:04.000+0000',
  messageCount: 1,
  mccMnc: '22801',
  price: { pricePerMessage: 0.01, currency: 'EUR' },
  status: { groupId: 3, groupName: 'DELIVERED', id: 5, name: 'DELIVERED_TO_HANDSET', description: 'Message delivered to handset' },
  error: { groupId: 0, groupName: 'OK', id: 0, name: 'NO_ERROR', description: 'No Error', permanent: false },
}

/**
 * The envelope is strict, the results are not: one malformed result must not cost the batch its good
 * ones, so each is checked by the dlr worker against `DeliveryReport` and skipped on its own.
 */
export const DlrBody = Type.Object(
  {
    results: Type.Array(
      Type.Unknown({
        description: 'A v3 or v2 report, checked on its own: without a string messageId and a status object with integer groupId/id it is skipped and counted.',
      }),
      {
        description: `Up to ${DLR_MAX_RESULTS} reports; more answers 413.`,
      },
    ),
  },
  { examples: [{ results: [example] }] },
)
export type DlrBody = Static<typeof DlrBody>

export const DlrQuery = Type.Object({ token: Type.Optional(Type.String({ description: 'DLR_WEBHOOK_TOKEN' })) })
export const DlrHeaders = Type.Object({
  'x-webhook-token': Type.Optional(Type.String({ description: 'DLR_WEBHOOK_TOKEN, instead of the query parameter' })),
  authorization: Type.Optional(Type.String({ description: 'HTTP Basic with DLR_WEBHOOK_TOKEN as password, instead of the query parameter' })),
})
export const DlrAccepted = Type.Object({ received: Type.Integer({ description: 'Results stored for the dlr workers.' }) })

/** Infobip's Java side may send `null` for an absent field: both mean "not given". */
const Maybe = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))

/**
 * One result as far as we rely on it: the fields that decide the status and identify duplicates must
 * have the right types. Every other field (v3 `messageCount`, v2 `smsCount`, `price`, `platform`…) is
 * optional and passed through as Infobip sent it.
 */
export const DeliveryReport = Type.Object({
  messageId: Type.String({ minLength: 1, maxLength: 200 }),
  status: Type.Object({ groupId: Maybe(Type.Integer()), id: Maybe(Type.Integer()), name: Maybe(Type.String()) }),
  error: Maybe(Type.Object({ id: Maybe(Type.Integer()) })),
  doneAt: Maybe(Type.String()),
})
export type DeliveryReport = Static<typeof DeliveryReport> & Record<string, unknown>

const inboundExample = {
  messageId: '817790313235066447',
  from: '41793026727',
  to: '41790000000',
  text: 'STOP please',
  cleanText: 'please',
  keyword: 'STOP',
  receivedAt: '2026-11-28T10:00:00.000+0000',
  smsCount: 1,
  price: { pricePerMessage: 0, currency: 'EUR' },
  callbackData: null,
}

/**
 * Infobip's inbound-message webhook, `MO_JSON_2` (docs/infobip.md#inbound-messages). As for reports,
 * only the envelope is strict: each result is checked by the inbound worker against `InboundMessage`.
 */
export const InboundBody = Type.Object(
  {
    results: Type.Array(Type.Unknown({ description: 'One inbound SMS, checked on its own: without a string messageId and from it is skipped.' }), {
      description: `Up to ${DLR_MAX_RESULTS} messages; more answers 413.`,
    }),
    messageCount: Type.Optional(Type.Unknown()),
    pendingMessageCount: Type.Optional(Type.Unknown()),
  },
  { examples: [{ results: [inboundExample], messageCount: 1, pendingMessageCount: 0 }] },
)
export type InboundBody = Static<typeof InboundBody>
export const InboundAccepted = Type.Object({ received: Type.Integer({ description: 'Messages stored for the inbound workers.' }) })

/**
 * One inbound SMS as far as we rely on it: `messageId` (repeats), `from` (whose opt-out), `to` (which
 * tenant's number) and the text. `cleanText` is the text without Infobip's keyword, so it is not what
 * the first word is read from. Every other field is optional and ignored.
 */
export const InboundMessage = Type.Object({
  messageId: Type.String({ minLength: 1, maxLength: 200 }),
  from: Type.String({ minLength: 1, maxLength: 64 }),
  to: Maybe(Type.String({ maxLength: 64 })),
  text: Maybe(Type.String()),
  keyword: Maybe(Type.String()),
})
export type InboundMessage = Static<typeof InboundMessage>
