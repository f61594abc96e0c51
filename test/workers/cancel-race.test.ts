import t from 'tap'
import { AUTH, startSystem, waitFor } from '../helpers/index.js'

/**
 * Cancels fired while the send workers claim the same messages: the CANCEL and CLAIM scripts decide
 * on the record in one step each, so every message ends either CANCELED and never submitted, or
 * submitted with its cancel refused (409) — never both, never neither.
 */
t.test('cancel against claim, 3,000 times: one winner each', async (t) => {
  const { app, sim } = await startSystem(t, 'cancel-race', { WORKER_QUEUES: 'send,dlr', SEND_CONCURRENCY: 2 }, { SIM_DLR_DELAY_MS: 10, SIM_LATENCY_MS: 50 })
  const BATCHES = 30
  // Every message is due at the same moment: the workers claim them from then on, and the cancels are
  // spread from well before that moment (they win) to well after the last claim (they lose).
  const due = Date.now() + 8000
  const sendAt = new Date(due).toISOString()
  const outcomes = new Map<string, number>()
  const cancels: Promise<void>[] = []
  for (let b = 0; b < BATCHES; b++) {
    const messages = Array.from({ length: 100 }, (_, i) => ({
      to: `+4179302${String(1000 + ((b * 100 + i) % 8000)).padStart(4, '0')}`,
      text: 'race',
      reference: 'race',
      sendAt,
    }))
    const res = await app.inject({ method: 'POST', url: '/messages/batch', headers: AUTH, payload: { messages } })
    t.equal(res.statusCode, 202)
    for (const { id } of res.json<{ messages: { id: string }[] }>().messages) {
      const delay = Math.max(0, due - Date.now() - 1000 + Math.floor(Math.random() * 3500))
      cancels.push(
        new Promise<void>((resolve) => setTimeout(resolve, delay)).then(async () => {
          outcomes.set(id, (await app.inject({ method: 'POST', url: `/messages/${id}/cancel`, headers: AUTH })).statusCode)
        }),
      )
    }
  }
  await Promise.all(cancels)
  const ids = [...outcomes.keys()]
  await waitFor(async () => (await app.store.getMany(ids)).every((m) => m!.final), 60_000, 'every message final', 250)
  const messages = await app.store.getMany(ids)
  let won = 0
  let lost = 0
  let double = 0
  for (const [i, id] of ids.entries()) {
    const message = messages[i]!
    const submissions = (await sim.app.inject({ url: `/_sim/messages/${id}` })).json<{ submissions?: number }>().submissions ?? 0
    const code = outcomes.get(id)
    if (code === 200 && message.status === 'CANCELED' && submissions === 0) won++
    else if (code === 409 && message.status !== 'CANCELED' && submissions >= 1) lost++
    else double++
  }
  t.comment(`cancels tried ${ids.length}, won ${won}, lost ${lost}, double or missing outcomes ${double}`)
  t.equal(double, 0, 'never both, never neither')
  t.equal(won + lost, 3000)
  t.ok(won > 0 && lost > 0, 'both sides won some races')
})
