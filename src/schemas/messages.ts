import { Type, type Static } from '@sinclair/typebox'
import { MessageResource } from '../domain/message.js'
import { StatusSchema } from '../domain/status.js'

const example = {
  to: '+41 79 302 67 27',
  text: 'Your code is 1234',
  from: 'MyBrand',
  reference: 'order-42',
  callbackUrl: 'https://example.com/sms-status',
  validityPeriodMinutes: 720,
}

export const NewMessageBody = Type.Object(
  {
    to: Type.String({ minLength: 1, maxLength: 32, description: 'International number in any common notation; stored as digits only.' }),
    text: Type.String({ minLength: 1, maxLength: 4000, description: 'GSM-7 or Unicode text, at most 25 segments.' }),
    from: Type.Optional(
      Type.String({ pattern: '^(?:[A-Za-z0-9 ]{1,11}|\\+?[0-9]{1,15})$', description: '1–11 alphanumerics or up to 15 digits; default INFOBIP_SENDER.' }),
    ),
    reference: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: "The client's own id, echoed everywhere." })),
    callbackUrl: Type.Optional(Type.String({ format: 'uri', pattern: '^https?://', maxLength: 2000, description: 'Receives status changes.' })),
    sendAt: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601 instant in the future, at most 180 days ahead.' })),
    validityPeriodMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 2880 })),
  },
  { additionalProperties: false, examples: [example] },
)
export type NewMessageBody = Static<typeof NewMessageBody>

export const BATCH_MAX = 1000

export const BatchBody = Type.Object(
  { messages: Type.Array(NewMessageBody, { minItems: 1, maxItems: BATCH_MAX }) },
  { additionalProperties: false, examples: [{ messages: [example, { to: '+49 151 1234 5678', text: 'Hallo!' }] }] },
)
export type BatchBody = Static<typeof BatchBody>

export const ErrorResponse = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String() },
  { $id: 'Error', examples: [{ statusCode: 400, error: 'Bad Request', message: 'body/to must be a valid international phone number' }] },
)

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, examples: ['msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F'] }) })

export const AuthHeaders = Type.Object({
  authorization: Type.Optional(Type.String()),
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
})

export const SearchQuerystring = Type.Object(
  {
    status: Type.Optional(StatusSchema),
    reference: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    to: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'created at or after' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'created before' })),
    // Query strings are not coerced: numbers arrive as digits.
    limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]\\d{0,1}|[1-4]\\d{2}|500)$', description: '1–500, default 50' })),
    cursor: Type.Optional(Type.String({ pattern: '^msg_[0-9A-Z]{26}$', description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
)

export const SearchPage = Type.Object({ messages: Type.Array(MessageResource), nextCursor: Type.Union([Type.String(), Type.Null()]) })
