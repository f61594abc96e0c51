import { MessageStore } from '../../src/store/message-store.js'
import { cleanup, prefixMemory, statusCounts, usedMemory } from '../redis.js'
import { equal, type Row } from '../report.js'
import type { HsetCeiling } from './ceilings.js'
import { deliver, markPending, prefixOf, storeMessages, TTL_DAYS, type Ctx } from './common.js'

/**
 * Redis memory per stored message with a 20-character text: `INFO memory` `used_memory` before and after
 * storing `count` messages through the service's store, as the API leaves them (QUEUED) and at the end of
 * their life (claimed, PENDING, then DELIVERED by Infobip's report) — what Redis keeps for the TTL.
 * Σ `MEMORY USAGE` of the prefix's keys cross-checks it: other clients of the same Redis would show as a gap.
 */
export async function memoryPerMessage(ctx: Ctx, hset: HsetCeiling, count = 10_000): Promise<Row[]> {
  const prefix = prefixOf(ctx, 'memory')
  const store = new MessageStore(ctx.redis, { prefix, ttlDays: TTL_DAYS })
  const statuses = (ids: string[]) =>
    statusCounts(
      ctx.redis,
      ids.map((id) => store.keys.message(id)),
    )
  try {
    const before = await usedMemory(ctx.redis)
    const ids = await storeMessages(store, count)
    const queued = await perMessage(ctx, prefix, before, count)
    const queuedStatuses = await statuses(ids)

    await markPending(store, ids)
    const applied = await deliver(store, ids)
    const delivered = await perMessage(ctx, prefix, before, count)
    const deliveredStatuses = await statuses(ids)
    const floor = { name: 'bare 3-field hash', value: hset.bytesPerHash }
    return [
      {
        scenario: 'Redis memory per message, QUEUED',
        figure: queued.bytes,
        unit: 'B',
        ceiling: floor,
        checks: [equal('records QUEUED', queuedStatuses.QUEUED ?? 0, count)],
        notes: queued.notes,
      },
      {
        scenario: 'Redis memory per message, DELIVERED',
        figure: delivered.bytes,
        unit: 'B',
        ceiling: floor,
        target: { text: '≤ 2,048 B', met: delivered.bytes <= 2048 },
        checks: [equal('reports applied', applied, count), equal('records DELIVERED', deliveredStatuses.DELIVERED ?? 0, count)],
        notes: `${delivered.notes}; ${count.toLocaleString('en-US')} messages`,
      },
    ]
  } finally {
    await cleanup(ctx.redis, prefix)
  }
}

/**
 * `used_memory` now minus `before`, per message. Other clients of the same Redis (tests running beside
 * the benchmark) move `used_memory` too: when it disagrees by more than 25% with Σ MEMORY USAGE of the
 * prefix's keys, which only counts ours, the figure is that sum instead, and the notes say so.
 */
async function perMessage(ctx: Ctx, prefix: string, before: number, count: number): Promise<{ bytes: number; notes: string }> {
  const keys = (await prefixMemory(ctx.redis, prefix)) / count
  const info = ((await usedMemory(ctx.redis)) - before) / count
  if (Math.abs(info - keys) <= 0.25 * keys) return { bytes: info, notes: `INFO used_memory; Σ MEMORY USAGE of the keys: ${Math.round(keys)} B` }
  return { bytes: keys, notes: `Σ MEMORY USAGE of the keys: INFO used_memory (${Math.round(info)} B) moved with other clients' writes` }
}
