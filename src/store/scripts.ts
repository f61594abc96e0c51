import { FINAL_RANK, RANK, STATUS } from '../domain/status.js'

/**
 * The Lua scripts of the store. Each touches the keys of one message only (one hash slot).
 * The rank table is generated from `RANK` so that Lua and TypeScript cannot disagree.
 */
const rankTable = `{${Object.entries(RANK).map(([status, rank]) => `${status}=${rank}`).join(',')}}`
/** Status → position of its index among the script's KEYS (after the three fixed keys). */
const indexTable = `{${Object.values(STATUS).map((status, i) => `${status}=${i + 4}`).join(',')}}`

/**
 * Applies one status change (SPEC §5 rules 1–4): a fingerprint seen before is a duplicate (the
 * record's field `f:<fingerprint>` holds the seq of the event it made, or ''); a rank not higher
 * than the current one is ignored; otherwise status, event and `error` are written together, and the
 * report's `infobip` JSON replaces the previous one in its own string key (which expires with the
 * record). The event is a field `e<seq>` of the record ("status|source|at ms|infobip status"). Kept
 * out of the record, the JSON leaves every field short, so the record stays in Redis's compact
 * hash encoding, and Lua never has to parse it.
 *
 * The message also moves between the status indexes, and leaves the open index when final.
 *
 * KEYS: 1 record hash, 2 infobip JSON, 3 open index, 4… the status indexes
 * ARGV: 1 status, 2 source, 3 at (ISO), 4 at (ms), 5 infobip status name, 6 error JSON,
 *       7 fingerprint, 8 ttl seconds, 9 "1" to clear the in-flight marker of the send worker,
 *       10 message id, 11 the report that sets this status (JSON, or '' to keep the previous one)
 * Returns { result, previous status, seq, submittedAt, callbackUrl, reference }, and for a duplicate
 * that once changed the status, the same plus the event's time (ms)
 */
export const TRANSITION = `
local RANK = ${rankTable}
local INDEX = ${indexTable}
local fp = ARGV[7] ~= '' and 'f:' .. ARGV[7] or nil
local meta = redis.call('HMGET', KEYS[1], 'status', 'submittedAt', 'callbackUrl', 'reference', 'seq', fp or 'seq')
local current = meta[1]
if not current then return {'unmatched'} end
if ARGV[9] == '1' then redis.call('HDEL', KEYS[1], 'inflight') end
if fp then
  local seen = meta[6]
  if seen == '' then return {'duplicate'} end
  if seen then
    -- The report changed the status when first applied: say which event it made, so that a retried
    -- job can add that event's callback, should it have died before doing so.
    local events = redis.call('HMGET', KEYS[1], 'e' .. (tonumber(seen) - 1), 'e' .. seen)
    local previous = string.match(events[1] or '', '^[^|]*')
    local at = string.match(events[2] or '', '^[^|]*|[^|]*|([^|]*)') or ''
    return {'duplicate', previous, seen, meta[2] or '', meta[3] or '', meta[4] or '', at}
  end
end
if RANK[ARGV[1]] <= RANK[current] then
  if fp then redis.call('HSET', KEYS[1], fp, '') end
  return {'ignored', current}
end
local seq = tonumber(meta[5]) + 1
local fields = {'status', ARGV[1], 'seq', seq, 'updatedAt', ARGV[3], 'e' .. seq, ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[4] .. '|' .. ARGV[5]}
if fp then
  fields[#fields + 1] = fp
  fields[#fields + 1] = seq
end
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'error'
  fields[#fields + 1] = ARGV[6]
end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[11] ~= '' then
  local expires = redis.call('PEXPIRETIME', KEYS[1])
  if expires > 0 then redis.call('SET', KEYS[2], ARGV[11], 'PXAT', expires)
  else redis.call('SET', KEYS[2], ARGV[11], 'EX', ARGV[8]) end
end
redis.call('ZREM', KEYS[INDEX[current]], ARGV[10])
redis.call('ZADD', KEYS[INDEX[ARGV[1]]], 0, ARGV[10])
if RANK[ARGV[1]] == ${FINAL_RANK} then redis.call('ZREM', KEYS[3], ARGV[10]) end
return {'applied', current, seq, meta[2] or '', meta[3] or '', meta[4] or ''}
`

/**
 * Stores a new message: its record (with its QUEUED event) and its index entries, in one call.
 * Called inside a MULTI for a batch, so that a batch is stored whole or not at all.
 *
 * KEYS: 1 record hash, 2 outbox, 3 created index, 4 QUEUED index, 5 recipient index,
 *       6 reference index (unused without a reference)
 * ARGV: 1 ttl seconds, 2 message id, 3 now (ms), 4 "1" if it has a reference, 5… field, value pairs
 */
export const CREATE = `
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[6], 0, ARGV[2])
  redis.call('EXPIRE', KEYS[6], ARGV[1])
end
return 1
`

/**
 * Claims a message for submission to Infobip. A message past QUEUED is never submitted again; one
 * whose earlier submission has no known outcome (the in-flight marker is still there) must be looked
 * up first, unless the caller already did (ARGV[1] = "force").
 *
 * A claimed message enters the open index: the reconciler looks it up if no final report comes.
 *
 * KEYS: 1 record hash, 2 open index. ARGV: 1 "force" or "", 2 now (ms), 3 message id
 * Returns "missing" | "done" | "unknown" | "ok"
 */
export const CLAIM = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'QUEUED' then return 'done' end
if ARGV[1] ~= 'force' and redis.call('HEXISTS', KEYS[1], 'inflight') == 1 then return 'unknown' end
redis.call('HSET', KEYS[1], 'inflight', ARGV[2], 'submittedAt', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 'ok'
`

/**
 * A fixed one-second window shared by every worker process: reserves `n` submissions and returns 1,
 * or returns 0 when the window's budget is spent. A request larger than the whole budget still goes
 * alone into an empty window, or it could never be sent.
 *
 * KEYS: 1 the window's key. ARGV: 1 n, 2 limit per second
 */
export const RESERVE_BUDGET = `
local n = tonumber(ARGV[1])
local used = redis.call('INCRBY', KEYS[1], n)
if used == n then redis.call('EXPIRE', KEYS[1], 2) return 1 end
if used > tonumber(ARGV[2]) then redis.call('DECRBY', KEYS[1], n) return 0 end
return 1
`
