import type { Redis } from 'ioredis'
import type { Message, SearchQuery } from '../domain/message.js'
import { idBound } from './codec.js'
import type { Keys } from './keys.js'

export interface SearchPage {
  messages: Message[]
  nextCursor: string | null
}

/**
 * Finds messages, newest first: walks the most selective index in id order (ids sort by creation
 * time) and filters on the other criteria, until `limit` are found. The cursor is the last id
 * returned. See docs/store.md#indexes.
 */
export async function searchMessages(
  redis: Redis,
  keys: Keys,
  getMany: (ids: string[]) => Promise<(Message | undefined)[]>,
  query: SearchQuery,
): Promise<SearchPage> {
  const index = query.reference
    ? keys.byReference(query.reference)
    : query.to
      ? keys.byRecipient(query.to)
      : query.status
        ? keys.byStatus(query.status)
        : keys.created()
  let max = query.cursor ? `(${query.cursor}` : query.until ? `(${idBound(query.until)}` : '+'
  const min = query.since ? `[${idBound(query.since)}` : '-'
  const found: Message[] = []
  const page = Math.min(Math.max(query.limit * 2, 50), 1000)
  for (;;) {
    const batch = (await redis.call('ZRANGE', index, max, min, 'BYLEX', 'REV', 'LIMIT', 0, page)) as string[]
    if (batch.length === 0) return { messages: found, nextCursor: null }
    for (const message of await getMany(batch)) {
      if (!message || !matches(message, query)) continue
      found.push(message)
      if (found.length === query.limit) return { messages: found, nextCursor: message.id }
    }
    if (batch.length < page) return { messages: found, nextCursor: null }
    max = `(${batch[batch.length - 1]}`
  }
}

function matches(m: Message, q: SearchQuery): boolean {
  return (!q.status || m.status === q.status) && (!q.reference || m.reference === q.reference) && (!q.to || m.to === q.to)
}
