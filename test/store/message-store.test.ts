import t from 'tap'
import { ulid } from 'ulid'
import { newMessageId } from '../../src/accept-messages.js'
import { inShard } from '../../src/shards.js'
import { MAX_EXAMINED } from '../../src/store/search.js'
import { DEFAULT_TENANT } from '../../src/tenants.js'
import { AUTH, buildTestApp, keysUnder, testConfig } from '../helpers/index.js'

const config = testConfig('store')
const app = await buildTestApp(t, config)
const { keys } = app.store

const post = (payload: unknown, url = '/messages') =>
  app.inject({
    method: 'POST',
    url,
    headers: { ...AUTH, 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  })

/** Every key of the prefix but the rate limiter's, the metrics' and the queues' metadata: what a failed create must not leave. */
async function footprint(): Promise<string[]> {
  const all = await keysUnder(app.redis, `${config.KEY_PREFIX}:*`)
  // BullMQ writes each queue's `meta` key when the queue starts, whenever that is.
  return all.filter((k) => !k.includes(':ratelimit:') && !k.endsWith(':metrics') && !k.endsWith(':meta')).sort()
}

t.test('a Redis error in the middle of a create leaves nothing behind, for one message and for a batch', async (t) => {
  // A recipient index of the wrong type (in every shard): the record and the created index are written before it fails.
  const poisoned = app.store.shards.map((shard) => keys.byRecipient(DEFAULT_TENANT, '41793020666', shard))
  for (const key of poisoned) await app.redis.set(key, 'not a sorted set')
  const before = await footprint()

  const single = await post({ to: '+41793020666', text: 'never sent' })
  t.equal(single.statusCode, 500, 'a WRONGTYPE is an internal error')
  t.same(await footprint(), before, 'no record, index entry or outbox entry is left')
  for (const shard of app.store.shards) t.equal(await app.redis.zcard(keys.outbox(shard)), 0, 'nothing for the outbox sweeper to send')

  const batch = await post(
    {
      messages: [
        { to: '+41793020111', text: 'a' },
        { to: '+41793020666', text: 'b' },
        { to: '+41793020222', text: 'c' },
      ],
    },
    '/messages/batch',
  )
  t.equal(batch.statusCode, 500)
  t.same(await footprint(), before, 'the messages of the batch that were stored are removed again')
  for (const key of poisoned) await app.redis.del(key)
})

t.test('messages of several shards written together: one shard failing leaves nothing in the others', async (t) => {
  const poisoned = keys.byRecipient(DEFAULT_TENANT, '41793020666', 1)
  await app.redis.set(poisoned, 'not a sorted set')
  t.teardown(() => app.redis.del(poisoned).then(() => undefined))
  const before = await footprint()
  const base = { tenant: DEFAULT_TENANT, from: 'InfoSMS', text: 'x', encoding: 'GSM-7' as const, segments: 1 }
  const messages = [0, 1, 2].flatMap((shard) => [
    { ...base, id: newMessageId(Date.now(), shard), to: '41793020111' },
    { ...base, id: newMessageId(Date.now(), shard), to: '41793020666' },
  ])
  await t.rejects(app.store.create(messages), /WRONGTYPE/)
  t.same(await footprint(), before, 'shards 0 and 2, stored, are removed again; shard 1 undid itself')
})

t.test('text that is not well-formed Unicode (a lone surrogate) is refused, not stored as U+FFFD', async (t) => {
  const res = await post('{"to":"+41793026727","text":"hi \\ud800 there"}')
  t.equal(res.statusCode, 400)
  t.match(res.json(), { message: 'body/text must be well-formed Unicode (it has a lone surrogate)' })
  const ok = await post('{"to":"+41793026727","text":"a pair: \\ud83d\\udc4b"}')
  t.equal(ok.statusCode, 202)
  t.equal(ok.json<{ text: string }>().text, 'a pair: 👋')
})

t.test('a search examines at most MAX_EXAMINED index entries and returns a cursor to go on', async (t) => {
  const total = MAX_EXAMINED + 500
  for (let i = 0; i < total; i += 1000) {
    const messages = Array.from({ length: Math.min(1000, total - i) }, () => ({ to: '+41793027777', text: 'x', reference: 'big' }))
    t.equal((await post({ messages }, '/messages/batch')).statusCode, 202)
  }
  // The reference index is walked; no message of it has this number, so nothing ever matches.
  const search = (cursor?: string) =>
    app
      .inject({ url: `/messages?reference=big&to=%2B41793028888${cursor ? `&cursor=${cursor}` : ''}`, headers: AUTH })
      .then((r) => r.json<{ messages: unknown[]; nextCursor: string | null }>())
  const first = await search()
  t.same(first.messages, [])
  t.type(first.nextCursor, 'string', 'a capped page says where to go on')
  const second = await search(first.nextCursor!)
  t.same(second, { messages: [], nextCursor: null }, 'the rest of the index, then the end')
})

t.test('per-recipient and per-reference indexes shed entries whose records have expired', async (t) => {
  const old = Date.now() - (config.MESSAGE_TTL_DAYS + 5) * 24 * 3600_000
  // Ids of that time (the service's own id factory is monotonic: it never goes back in time).
  // All in shard 0, whose indexes this test reads.
  const idAt = (ms: number) => inShard(`msg_${ulid(ms)}`, 0)
  const expired = Array.from({ length: 6 }, (_, i) => idAt(old + i))
  const base = { tenant: DEFAULT_TENANT, to: '41793029999', from: 'InfoSMS', text: 'x', reference: 'old-campaign', encoding: 'GSM-7' as const, segments: 1 }
  await app.store.create(expired.map((id) => ({ ...base, id, createdAt: new Date(old) })))
  await app.store.removeFromOutbox(expired)
  const live = idAt(old + 10)
  await app.store.create([{ ...base, id: live, createdAt: new Date(old) }])
  await app.store.removeFromOutbox([live])
  // Their records expire (the live one, say a scheduled message, does not).
  await app.redis.del(...expired.map((id) => keys.message(id)))

  const recipient = keys.byRecipient(DEFAULT_TENANT, base.to, 0)
  const reference = keys.byReference(DEFAULT_TENANT, base.reference, 0)
  t.equal(await app.redis.zcard(recipient), 7)
  for (let i = 0; i < 2; i++) await app.store.create([{ ...base, id: newMessageId(Date.now(), 0) }])
  t.same(await app.redis.zrange(recipient, '0', '0'), [live], 'the expired entries are gone, the live one stays')
  t.equal(await app.redis.zcard(recipient), 3)
  t.equal(await app.redis.zcard(reference), 3)
})

t.test('reports for unknown messages are kept with masked numbers, and expire', async (t) => {
  await app.store.keepUnmatched([{ messageId: 'msg_unknown', to: '41793026727', from: 'InfoSMS', status: { groupId: 3 } }])
  const [kept] = await app.redis.lrange(keys.unmatched(), 0, 0)
  t.notOk(kept!.includes('41793026727'), 'no full number')
  t.match(JSON.parse(kept!), { messageId: 'msg_unknown', to: '*******6727', from: 'InfoSMS' })
  const ttl = await app.redis.ttl(keys.unmatched())
  t.ok(ttl > 0 && ttl <= config.MESSAGE_TTL_DAYS * 24 * 3600, `expires (${ttl} s)`)
})
