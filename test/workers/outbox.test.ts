import { DEFAULT_TENANT } from '../../src/tenants.js'
import { pino } from 'pino'
import t from 'tap'
import { newMessageId } from '../../src/accept-messages.js'
import { createQueues, QUEUE, type SendJob } from '../../src/queues.js'
import { startOutboxSweeper } from '../../workers/outbox.js'
import { buildTestApp, testConfig } from '../helpers/index.js'

t.test('a message stored without its send job (API died between the writes) is enqueued by the sweeper', async (t) => {
  const config = testConfig('outbox')
  const app = await buildTestApp(t, config)
  const queue = createQueues<SendJob>(QUEUE.send, app.redis, config)
  t.teardown(() => queue.close())
  const id = newMessageId()
  // The first write of POST /messages, without the second.
  await app.store.create([{ id, tenant: DEFAULT_TENANT, to: '41793026727', from: 'InfoSMS', text: 'orphan', encoding: 'GSM-7', segments: 1 }])
  const sweeper = startOutboxSweeper({ store: app.store, queue, config, log: pino({ level: 'silent' }) }, 60_000, 0)
  t.teardown(() => sweeper.stop())

  t.equal(await sweeper.sweep(), 1)
  const job = await queue.getJob(id)
  t.same(job?.data, { ids: [id], tenant: 'default' })
  t.equal(await sweeper.sweep(), 0, 'it left the outbox')

  // Messages whose jobs were added normally leave the outbox at once: nothing to sweep.
  await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { authorization: 'Bearer test-api-key-0123456789' },
    payload: { to: '+41793026727', text: 'x' },
  })
  t.equal(await sweeper.sweep(), 0)
})
