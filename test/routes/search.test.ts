import { DEFAULT_TENANT } from '../../src/tenants.js'
import fc from 'fast-check'
import t from 'tap'
import { STATUS } from '../../src/domain/status.js'
import type { Message } from '../../src/domain/message.js'
import { AUTH, buildTestApp, testConfig } from '../helpers/index.js'

const app = await buildTestApp(t, testConfig('search'))
const search = async (query: string) => {
  const res = await app.inject({ url: `/messages?${query}`, headers: AUTH })
  return { status: res.statusCode, body: res.json<{ messages: Message[]; nextCursor: string | null; message?: string }>() }
}

const created: Message[] = []
for (let i = 0; i < 30; i++) {
  const to = i % 3 === 0 ? '+41793021111' : '+41793022222'
  const res = await app.inject({ method: 'POST', url: '/messages', headers: AUTH, payload: { to, text: `m${i}`, reference: `ref-${i % 5}` } })
  created.push(res.json())
}
const newestFirst = [...created].reverse().map((m) => m.id)

t.test('newest first, cursor-paged', async (t) => {
  const first = await search('limit=12')
  t.equal(first.status, 200)
  t.same(
    first.body.messages.map((m) => m.id),
    newestFirst.slice(0, 12),
  )
  const second = await search(`limit=12&cursor=${first.body.nextCursor}`)
  t.same(
    second.body.messages.map((m) => m.id),
    newestFirst.slice(12, 24),
  )
  const third = await search(`limit=12&cursor=${second.body.nextCursor}`)
  t.same(
    third.body.messages.map((m) => m.id),
    newestFirst.slice(24),
  )
  t.equal(third.body.nextCursor, null)
})

t.test('filters: reference, to (any notation), status, since/until', async (t) => {
  const byRef = await search('reference=ref-2')
  t.same(
    byRef.body.messages.map((m) => m.id),
    newestFirst.filter((id) => created.find((m) => m.id === id)!.reference === 'ref-2'),
  )
  const byTo = await search(`to=${encodeURIComponent('+41 79 302 11 11')}`)
  t.equal(byTo.body.messages.length, 10)
  t.ok(byTo.body.messages.every((m) => m.to === '41793021111'))
  const both = await search(`to=41793021111&reference=ref-0`)
  t.ok(both.body.messages.every((m) => m.to === '41793021111' && m.reference === 'ref-0'))
  t.equal(both.body.messages.length, created.filter((m) => m.to === '41793021111' && m.reference === 'ref-0').length)
  t.equal((await search('status=QUEUED')).body.messages.length, 30)
  t.equal((await search('status=DELIVERED')).body.messages.length, 0)
  const middle = created[10]!.createdAt
  const since = await search(`since=${middle}&limit=500`)
  t.ok(since.body.messages.every((m) => m.createdAt >= middle))
  t.ok(since.body.messages.length >= 20)
  const until = await search(`until=${middle}&limit=500`)
  t.ok(until.body.messages.every((m) => m.createdAt < middle))
  t.equal(since.body.messages.length + until.body.messages.length, 30)
})

t.test('bad queries are 400s naming the field', async (t) => {
  for (const [query, message] of [
    ['limit=501', /querystring\/limit/],
    ['limit=0', /querystring\/limit/],
    ['status=LOST', /querystring\/status/],
    ['to=hello', /querystring\/to must be a valid international phone number/],
    ['since=yesterday', /querystring\/since/],
    ['cursor=abc', /querystring\/cursor/],
    ['colour=red', /querystring\/colour is not allowed/],
  ] as const) {
    const res = await search(query)
    t.equal(res.status, 400, query)
    t.match(res.body.message, message)
  }
  t.equal((await app.inject({ url: '/messages' })).statusCode, 401)
})

t.test('the status index never drifts from the records, whatever transitions are applied', async (t) => {
  const ids = created.map((m) => m.id)
  const statuses = Object.values(STATUS)
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: ids.length - 1 }), fc.constantFrom(...statuses)), { minLength: 1, maxLength: 40 }),
      async (changes) => {
        await Promise.all(changes.map(([i, status]) => app.store.transition([{ id: ids[i]!, status: status, source: 'dlr' }])))
        const records = await app.store.getMany(ids)
        for (const status of statuses) {
          const indexed = new Set(
            (await Promise.all(app.store.shards.map((s) => app.redis.zrange(app.store.keys.byStatus(DEFAULT_TENANT, status, s), '0', '-1')))).flat(),
          )
          const actual = new Set(records.filter((m) => m!.status === status).map((m) => m!.id))
          if (indexed.size !== actual.size || [...actual].some((id) => !indexed.has(id))) return false
        }
        return true
      },
    ),
    { numRuns: 30 },
  )
  const delivered = await search('status=DELIVERED&limit=500')
  t.ok(delivered.body.messages.every((m) => m.status === 'DELIVERED'))
})
