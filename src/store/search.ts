import type { Message, SearchQuery } from '../domain/message.js'
import { idBound } from './codec.js'
import type { RedisClient } from '../redis.js'
import type { Keys } from './keys.js'

export interface SearchPage {
  messages: Message[]
  nextCursor: string | null
}

/** The most index entries one request looks at: a filter that never matches cannot walk a whole index. */
export const MAX_EXAMINED = 2000

/**
 * Finds a tenant's messages, newest first: walks the most selective of its indexes in id order (ids
 * sort by creation time) and filters on the other criteria, until `limit` are found or MAX_EXAMINED
 * entries were looked at. The cursor is the last id looked at, so the next page goes on from there.
 * Each shard has its own indexes: every step reads the next entries of each shard's index (at once)
 * and merges them by id, so that the pages are the same as with one index. `getMany` answers only the
 * tenant's own records. See docs/store.md#indexes.
 */
export async function searchMessages(
  redis: RedisClient,
  keys: Keys,
  shards: number[],
  getMany: (ids: string[]) => Promise<(Message | undefined)[]>,
  query: SearchQuery,
): Promise<SearchPage> {
  const { tenant } = query
  const index = (shard: number) =>
    query.reference
      ? keys.byReference(tenant, query.reference, shard)
      : query.to
        ? keys.byRecipient(tenant, query.to, shard)
        : query.status
          ? keys.byStatus(tenant, query.status, shard)
          : keys.created(tenant, shard)
  // The `want` newest entries below `max` over all shards are among each shard's `want` newest.
  const next = async (max: string, min: string, want: number) => {
    const pages = await Promise.all(shards.map((shard) => redis.call('ZRANGE', index(shard), max, min, 'BYLEX', 'REV', 'LIMIT', 0, want) as Promise<string[]>))
    return pages.length === 1 ? pages[0]! : pages.flat().sort().reverse().slice(0, want)
  }
  let max = query.cursor ? `(${query.cursor}` : query.until ? `(${idBound(query.until)}` : '+'
  const min = query.since ? `[${idBound(query.since)}` : '-'
  const found: Message[] = []
  const page = Math.min(Math.max(query.limit * 2, 50), 1000)
  let examined = 0
  for (;;) {
    const want = Math.min(page, MAX_EXAMINED - examined)
    const batch = await next(max, min, want)
    if (batch.length === 0) return { messages: found, nextCursor: null }
    const messages = await getMany(batch)
    for (const [i, message] of messages.entries()) {
      if (!message || !matches(message, query)) continue
      found.push(message)
      if (found.length === query.limit) return { messages: found, nextCursor: batch[i]! }
    }
    examined += batch.length
    const last = batch[batch.length - 1]!
    if (batch.length < want) return { messages: found, nextCursor: null }
    if (examined >= MAX_EXAMINED) return { messages: found, nextCursor: last }
    max = `(${last}`
  }
}

function matches(m: Message, q: SearchQuery): boolean {
  return (!q.status || m.status === q.status) && (!q.reference || m.reference === q.reference) && (!q.to || m.to === q.to)
}
