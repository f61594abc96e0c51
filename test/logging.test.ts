import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { loggerOptions } from '../src/logger.js'
import { startWorkers } from '../workers/start.js'
import { API_KEY, cleanup, DLR_TOKEN, INFOBIP_KEY, startSimulator, testConfig, waitFor } from './helpers/index.js'

/** Collects every log line a process would print. */
function capture() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  return { lines, stream }
}

t.test('a full send → report cycle logs no secret, no text and no full phone number', async (t) => {
  const sim = await startSimulator(t, testConfig('log-sim'))
  const logs = capture()
  const base = testConfig('logging', { INFOBIP_BASE_URL: sim.url, LOG_LEVEL: 'trace' })
  const app = await buildApp(base, { logger: { ...loggerOptions('trace'), stream: logs.stream } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const config = { ...base, PUBLIC_BASE_URL: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
  const workers = await startWorkers(config, pino(loggerOptions('trace'), logs.stream))
  t.teardown(async () => {
    await workers.close()
    await app.close()
    await cleanup(config.KEY_PREFIX)
  })

  const text = 'Secret code 987654 for Alice'
  const numbers = ['+41 79 302 61 23', '+41 79 302 00 06', '+41 79 302 00 07']
  const ids: string[] = []
  for (const to of numbers) {
    const res = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': `log-${to}` },
      payload: { to, text },
    })
    ids.push(res.json().id)
  }
  // A request with bad credentials and a bad body are logged too.
  await app.inject({ method: 'POST', url: '/messages', headers: { authorization: 'Bearer not-a-key-but-secret' }, payload: { to: '+41793026123', text } })
  await app.inject({ method: 'POST', url: `/infobip-dlr?token=${DLR_TOKEN}`, payload: 'not json', headers: { 'content-type': 'application/json' } })
  await app.inject({
    method: 'POST',
    url: '/infobip-dlr',
    headers: { 'x-webhook-token': DLR_TOKEN },
    payload: { results: [{ messageId: 'msg_unknown', to: '41793026123', status: { groupId: 3, id: 5 } }] },
  })

  await waitFor(
    async () => {
      const messages = await app.store.getMany(ids)
      return messages.every((m) => m?.final) || undefined
    },
    15_000,
    'all final',
  )
  await new Promise((resolve) => setImmediate(resolve))

  const all = logs.lines.join('\n')
  t.ok(logs.lines.length > 20, `${logs.lines.length} log lines captured`)
  t.match(all, /infobip-dlr\?token=\[redacted\]/, 'report requests are logged, with the token redacted')
  for (const secret of [API_KEY, DLR_TOKEN, INFOBIP_KEY, 'not-a-key-but-secret', text, '987654']) {
    t.notOk(all.includes(secret), `no "${secret.slice(0, 12)}…" in the logs`)
  }
  for (const digits of ['41793026123', '41793020006', '41793020007', '793026123']) {
    t.notOk(all.includes(digits), `no full number ${digits.slice(-4)} in the logs`)
  }
})
