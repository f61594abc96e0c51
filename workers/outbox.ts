import type { Logger } from 'pino'
import type { Config } from '../src/config.js'
import { sendJobs } from '../src/group-commit.js'
import type { Partitioned, SendJob } from '../src/queues.js'
import type { MessageStore } from '../src/store/message-store.js'

export interface OutboxSweeper {
  /** One pass; returns how many messages it enqueued. */
  sweep(): Promise<number>
  stop(): void
}

/**
 * The API stores a message and then adds its send job; if it dies between the two, the message
 * waits in the outbox. This sweeper, run by every send worker process, enqueues what has waited
 * longer than `olderThanMs`, shard by shard. Job ids are message ids and the send processor never submits a
 * message twice, so sweeping a message whose job does exist is harmless.
 */
export function startOutboxSweeper(
  deps: { store: MessageStore; queue: Partitioned<SendJob>; config: Config; log: Logger },
  everyMs = 30_000,
  olderThanMs = 60_000,
): OutboxSweeper {
  const { store, queue, config, log } = deps

  async function sweepShard(shard: number): Promise<number> {
    const ids = await store.outboxBefore(shard, olderThanMs)
    if (ids.length === 0) return 0
    const messages = (await store.getOwners(ids)).flatMap((owned) => (owned ? [{ ...owned.message, tenant: owned.tenant }] : []))
    if (messages.length > 0) await queue.addBulk(sendJobs(messages, config))
    await store.removeFromOutbox(ids)
    log.warn({ shard, count: messages.length }, 'enqueued messages whose send jobs were missing')
    return messages.length
  }

  async function sweep(): Promise<number> {
    let count = 0
    for (const shard of store.shards) count += await sweepShard(shard)
    return count
  }

  const timer = setInterval(() => {
    sweep().catch((error: Error) => log.warn({ error: error.message }, 'outbox sweep failed; will retry'))
  }, everyMs)
  timer.unref()
  return { sweep, stop: () => clearInterval(timer) }
}
