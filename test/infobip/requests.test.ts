import t from 'tap'
import { dlrUrl, loadConfig } from '../../src/config.js'
import { errorText, parseSendAnswer, retryAfterMs, v2Body, v3Body } from '../../src/infobip/requests.js'

const webhook = { url: dlrUrl(loadConfig({ PUBLIC_BASE_URL: 'https://sms.example.com/', DLR_WEBHOOK_TOKEN: 'token with spaces&=' })) }
const message = { id: 'msg_01JD3Q4W5X6Y7Z8A9B0C1D2E3F', to: '41793026727', from: 'MyBrand', text: 'Your code is 1234', validityPeriodMinutes: 720 }

t.test('the DLR URL carries the token, encoded', async (t) => {
  t.equal(webhook.url, 'https://sms.example.com/infobip-dlr?token=token%20with%20spaces%26%3D')
})

t.test('v3 body (docs/infobip.md): our id as the destination messageId, webhook, callbackData, validity, SMS counts asked for', async (t) => {
  t.same(v3Body([message], webhook), {
    messages: [
      {
        sender: 'MyBrand',
        destinations: [{ to: '41793026727', messageId: message.id }],
        content: { text: 'Your code is 1234' },
        webhooks: { delivery: { url: webhook.url }, contentType: 'application/json', callbackData: message.id },
        options: { validityPeriod: { amount: 720, timeUnit: 'MINUTES' } },
      },
    ],
    options: { includeSmsCountInResponse: true },
  })
  const plain = v3Body([{ ...message, validityPeriodMinutes: undefined }], webhook) as { messages: Record<string, unknown>[] }
  t.notOk('options' in plain.messages[0]!, 'no options without a validity period')
})

t.test('v2 body: from, text, notifyUrl, notifyContentType, callbackData, validityPeriod in minutes', async (t) => {
  t.same(v2Body([message], webhook), {
    messages: [
      {
        from: 'MyBrand',
        destinations: [{ to: '41793026727', messageId: message.id }],
        text: 'Your code is 1234',
        notifyUrl: webhook.url,
        notifyContentType: 'application/json',
        callbackData: message.id,
        validityPeriod: 720,
      },
    ],
  })
})

t.test('send answers of both versions normalise alike', async (t) => {
  const status = { groupId: 1, groupName: 'PENDING', id: 26, name: 'PENDING_ACCEPTED' }
  t.same(parseSendAnswer({ bulkId: 'b', messages: [{ messageId: 'm1', status, destination: '4179', details: { messageCount: 2 } }] }), {
    bulkId: 'b',
    results: [{ messageId: 'm1', status, messageCount: 2 }],
  })
  t.same(parseSendAnswer({ bulkId: 'b', messages: [{ messageId: 'm1', status, to: '4179', smsCount: 2 }] }).results, [
    { messageId: 'm1', status, messageCount: 2 },
  ])
  t.same(parseSendAnswer('not an object'), { results: [] })
  t.same(parseSendAnswer({ messages: [{ status }] }), { results: [] }, 'entries without messageId are dropped')
})

t.test("Infobip's error text from either envelope", async (t) => {
  t.equal(
    errorText({
      errorCode: 'E400',
      description: 'Request cannot be processed.',
      violations: [{ property: 'messages[0].destinations', violation: 'must not be empty' }],
    }),
    'Request cannot be processed. (messages[0].destinations: must not be empty)',
  )
  t.equal(errorText({ requestError: { serviceException: { messageId: 'BAD_REQUEST', text: 'Bad request' } } }), 'BAD_REQUEST: Bad request')
  t.equal(errorText('<html>gateway</html>'), '<html>gateway</html>')
  t.equal(errorText(undefined), 'no error text')
})

t.test('Retry-After as seconds or an HTTP date', async (t) => {
  t.equal(retryAfterMs('2'), 2000)
  t.equal(retryAfterMs(new Date(10_000).toUTCString(), 4000), 6000)
  t.equal(retryAfterMs('soon'), undefined)
  t.equal(retryAfterMs(undefined), undefined)
})
