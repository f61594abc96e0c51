import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from '../redis.js'
import { SUPPRESSED_ERROR } from '../domain/message.js'
import { FINAL_RANK, RANK } from '../domain/status.js'
import { DEFAULT_TENANT } from '../tenants.js'
import { STATUS_INDEX, SUPPRESSIONS } from './keys.js'

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    smsTransition(numberOfKeys: number, ...keysAndArgs: string[]): Result<string[][], Context>
    smsClaim(numberOfKeys: number, ...keysAndArgs: string[]): Result<string[][], Context>
    smsCreate(...keysAndArgs: string[]): Result<number, Context>
    smsCancel(numberOfKeys: number, ...keysAndArgs: string[]): Result<string[][], Context>
    smsRetire(numberOfKeys: number, ...keysAndArgs: string[]): Result<number, Context>
    smsReserveBudget(k1: string, n: number, limit: number, windowSeconds: number): Result<number, Context>
  }
}

/** Makes the scripts commands of this connection (ioredis sends EVALSHA, and the script once when Redis lacks it). */
export function defineScripts(redis: RedisClient): void {
  // TRANSITION and CLAIM take a batch: their number of keys is given with each call.
  redis.defineCommand('smsTransition', { lua: TRANSITION })
  redis.defineCommand('smsClaim', { lua: CLAIM })
  redis.defineCommand('smsCreate', { numberOfKeys: CREATE_KEYS, lua: CREATE })
  redis.defineCommand('smsCancel', { lua: CANCEL })
  redis.defineCommand('smsRetire', { lua: RETIRE })
  redis.defineCommand('smsReserveBudget', { numberOfKeys: 1, lua: RESERVE_BUDGET })
}

/**
 * The Lua scripts of the store. CREATE touches one message's keys; TRANSITION, CLAIM and CANCEL take
 * up to BATCH_SIZE messages per call (docs/store.md#scripts). Every status change, whichever script
 * makes it, is written by the one `change` function of PRELUDE. The rank table is generated from
 * `RANK` so that Lua and TypeScript cannot disagree.
 */
const rankTable = `{${Object.entries(RANK)
  .map(([status, rank]) => `${status}=${rank}`)
  .join(',')}}`
/** KEYS before the per-message ones: the open index and the stale index. */
const TRANSITION_SHARED_KEYS = 2
/** ARGV before the per-change ones: the ttl and the tenants' key root. */
const TRANSITION_SHARED_ARGS = 2
/** ARGV per status change. */
const TRANSITION_ARGS = 9

/**
 * What every script that changes a status shares. `change` writes one status change on a record: the
 * status, the next seq, the event (`e<seq>` = "status|source|at ms|infobip status"), the error if
 * any and `extra` fields; and moves the id between its tenant's status indexes, whose names it builds
 * from the tenants' key root and the record's tenant (a report does not say whose message it is).
 */
const PRELUDE = `
local RANK = ${rankTable}
local function change(record, id, root, tenant, current, status, seq, source, atMs, infobipStatus, err, extra)
  local fields = {'status', status, 'seq', seq, 'e' .. seq, status .. '|' .. source .. '|' .. atMs .. '|' .. infobipStatus}
  if err ~= '' then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = err
  end
  for i = 1, #extra do fields[#fields + 1] = extra[i] end
  redis.call('HSET', record, unpack(fields))
  local indexes = root .. tenant .. '${STATUS_INDEX}'
  redis.call('ZREM', indexes .. current, id)
  redis.call('ZADD', indexes .. status, 0, id)
end
local function suppressed(root, tenant, to)
  return redis.call('HEXISTS', root .. tenant .. '${SUPPRESSIONS}', to) == 1
end
`

const SUPPRESSED = JSON.stringify(SUPPRESSED_ERROR)

/**
 * Applies a list of status changes, each on its own message (docs/statuses.md#transition-rules, rules
 * 1–4), in one call: the per-call cost of a script (finding it, setting up its arguments, a reply to
 * decode) is paid once per batch instead of once per report. Each change is decided by itself,
 * exactly as if it came alone; the whole call is atomic, as every script is.
 *
 * For each change: a fingerprint seen before is a duplicate (the record's field `f:<fingerprint>`
 * holds the seq of the event it made, or ''); a rank not higher than the current one is ignored;
 * otherwise `change` writes it, and the report's `infobip` JSON replaces the previous one in its own
 * string key (which expires with the record). Kept out of the record, the JSON leaves every field
 * short, so the record stays in Redis's compact hash encoding, and Lua never has to parse it. The
 * message leaves the open and stale indexes when final.
 *
 * KEYS: 1 open index, 2 stale index, then per change: record hash, infobip JSON
 * ARGV: 1 ttl seconds, 2 the tenants' key root, then per change (TRANSITION_ARGS): status, source,
 *       at (ms), infobip status name, error JSON, fingerprint, "1" to clear the send worker's in-flight
 *       marker, message id, the report that sets this status (JSON, or '' to keep the previous one)
 * Returns per change { result, previous status, seq, submittedAt, callbackUrl, reference, tenant },
 * and for a duplicate that once changed the status, the same plus the event's time (ms)
 */
export const TRANSITION = `${PRELUDE}
local function apply(record, infobip, a)
  local status, source, atMs, infobipStatus, err, fingerprint, settles, id, report =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local fp = fingerprint ~= '' and 'f:' .. fingerprint or nil
  local meta = redis.call('HMGET', record, 'status', 'submittedAt', 'callbackUrl', 'reference', 'seq', fp or 'seq', 'tenant')
  local current = meta[1]
  if not current then return {'unmatched'} end
  local tenant = meta[7] or '${DEFAULT_TENANT}'
  if settles == '1' then redis.call('HDEL', record, 'inflight') end
  if fp then
    local seen = meta[6]
    if seen == '' then return {'duplicate'} end
    if seen then
      -- The report changed the status when first applied: say which event it made, so that a retried
      -- job can add that event's callback, should it have died before doing so.
      local events = redis.call('HMGET', record, 'e' .. (tonumber(seen) - 1), 'e' .. seen)
      local previous = string.match(events[1] or '', '^[^|]*')
      local at = string.match(events[2] or '', '^[^|]*|[^|]*|([^|]*)') or ''
      return {'duplicate', previous, seen, meta[2] or '', meta[3] or '', meta[4] or '', tenant, at}
    end
  end
  if RANK[status] <= RANK[current] then
    if fp then redis.call('HSET', record, fp, '') end
    return {'ignored', current}
  end
  local seq = tonumber(meta[5]) + 1
  change(record, id, ARGV[2], tenant, current, status, seq, source, atMs, infobipStatus, err, fp and {fp, seq} or {})
  if report ~= '' then
    local expires = redis.call('PEXPIRETIME', record)
    if expires > 0 then redis.call('SET', infobip, report, 'PXAT', expires)
    else redis.call('SET', infobip, report, 'EX', ARGV[1]) end
  end
  if RANK[status] == ${FINAL_RANK} then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
  return {'applied', current, seq, meta[2] or '', meta[3] or '', meta[4] or '', tenant}
end
local results = {}
local shared = ${TRANSITION_SHARED_KEYS}
for i = 0, (#KEYS - shared) / 2 - 1 do
  results[i + 1] = apply(KEYS[shared + 1 + 2 * i], KEYS[shared + 2 + 2 * i], ${TRANSITION_SHARED_ARGS} + 1 + ${TRANSITION_ARGS} * i)
end
return results
`

export const CREATE_KEYS = 7

/**
 * Stores a new message: its record (with its QUEUED event and its tenant), its tenant's index
 * entries and its outbox entry, all or nothing: a write that fails (a key of the wrong type, Redis
 * out of memory) undoes the ones before it, and the outbox entry, which makes the message sendable,
 * comes last. The ttl is MESSAGE_TTL_DAYS from when the message is due (its `sendAt`, else now).
 * A batch calls it once per message inside a MULTI; the store undoes the calls that succeeded when
 * one fails (docs/store.md#scripts).
 *
 * A number on the tenant's suppression list is looked up here, in the same call: such a message is
 * stored REJECTED at once (a second event, error SUPPRESSED) and never enters the outbox.
 *
 * The per-recipient and per-reference indexes outlive most of their entries (each lives as long as
 * its longest-lived message), so each call also drops up to three entries older than the retention
 * whose records are gone: an index that keeps receiving entries sheds as many old ones.
 *
 * KEYS: 1 record hash, 2 outbox, 3 created index, 4 QUEUED index, 5 recipient index,
 *       6 reference index (unused without a reference), 7 the tenant's suppression list
 * ARGV: 1 ttl seconds, 2 message id, 3 now (ms), 4 "1" if it has a reference, 5 the smallest id
 *       still within the retention, 6 what precedes an id in a record's key, 7 the tenants' key root,
 *       8 the tenant, 9 the number, 10… field, value pairs
 * Returns 1, or 2 when the number is suppressed
 */
export const CREATE = `${PRELUDE}
local id = ARGV[2]
local function trim(key)
  for _, old in ipairs(redis.call('ZRANGE', key, '-', '(' .. ARGV[5], 'BYLEX', 'LIMIT', 0, 3)) do
    if redis.call('EXISTS', ARGV[6] .. old) == 0 then redis.call('ZREM', key, old) end
  end
end
-- A per-value index lives as long as its longest-lived message: its expiry only ever moves later.
local function index(key)
  trim(key)
  redis.call('ZADD', key, 0, id)
  if redis.call('TTL', key) < tonumber(ARGV[1]) then redis.call('EXPIRE', key, ARGV[1]) end
end
local result = 1
local ok, err = pcall(function()
  redis.call('HSET', KEYS[1], unpack(ARGV, 10))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[3], 0, id)
  redis.call('ZADD', KEYS[4], 0, id)
  index(KEYS[5])
  if ARGV[4] == '1' then index(KEYS[6]) end
  if redis.call('HEXISTS', KEYS[7], ARGV[9]) == 1 then
    change(KEYS[1], id, ARGV[7], ARGV[8], 'QUEUED', 'REJECTED', 2, 'api', ARGV[3], '', '${SUPPRESSED}', {})
    result = 2
  else
    redis.call('ZADD', KEYS[2], ARGV[3], id)
  end
end)
if ok then return result end
pcall(redis.call, 'DEL', KEYS[1])
for i = 2, 6 do pcall(redis.call, 'ZREM', KEYS[i], id) end
pcall(redis.call, 'ZREM', ARGV[7] .. ARGV[8] .. '${STATUS_INDEX}REJECTED', id)
return redis.error_reply(type(err) == 'table' and err.err or tostring(err))
`

/**
 * Claims messages for submission to Infobip, a job's worth in one call. A message past QUEUED is
 * never submitted again. A claim leaves an in-flight marker ("<job id>|<ms>") until Infobip's answer
 * is recorded. A marker left by an earlier attempt of the same job, or older than the busy window
 * (a submission cannot take longer), means the outcome is unknown: the message must be looked up
 * first, unless the caller already did (ARGV[1] = "force"). A fresh marker of another job means that
 * job is submitting it right now (a second job for the same message, as the outbox sweeper can add):
 * "busy", left to that job. A claimed message enters the open index (the reconciler looks it up if no
 * final report comes), and what its submission needs comes back with the claim.
 *
 * Being one script on the record, a claim and a cancel (CANCEL) cannot both win. A message whose
 * number its tenant has suppressed since it was accepted is not claimed but REJECTED (SUPPRESSED),
 * in the same step.
 *
 * KEYS: 1 open index, 2… the records
 * ARGV: 1 "force" or "", 2 now (ms), 3 the claiming job's id, 4 the busy window (ms), 5 the tenants'
 *       key root, 6… the message ids
 * Returns per message {"missing"} | {"done"} | {"unknown"} | {"busy"} | {"ok", to, from, text, validity
 * minutes or ""} | {"suppressed", seq, callbackUrl, reference, tenant}
 */
export const CLAIM = `${PRELUDE}
local now = tonumber(ARGV[2])
local claims = {}
for i = 2, #KEYS do
  local record, id = KEYS[i], ARGV[i + 4]
  local m = redis.call('HMGET', record, 'status', 'inflight', 'attempts', 'to', 'from', 'text', 'validityPeriodMinutes', 'tenant', 'seq', 'callbackUrl', 'reference')
  local owner, since
  if m[2] then owner, since = string.match(m[2], '^(.*)|(%d+)$') end
  if not m[1] then claims[i - 1] = {'missing'}
  elseif m[1] ~= 'QUEUED' then claims[i - 1] = {'done'}
  elseif ARGV[1] ~= 'force' and owner and owner ~= ARGV[3] and now - tonumber(since) < tonumber(ARGV[4]) then claims[i - 1] = {'busy'}
  elseif ARGV[1] ~= 'force' and m[2] then claims[i - 1] = {'unknown'}
  else
    local tenant = m[8] or '${DEFAULT_TENANT}'
    if suppressed(ARGV[5], tenant, m[4]) then
      local seq = tonumber(m[9]) + 1
      change(record, id, ARGV[5], tenant, 'QUEUED', 'REJECTED', seq, 'send', ARGV[2], '', '${SUPPRESSED}', {})
      redis.call('HDEL', record, 'inflight')
      claims[i - 1] = {'suppressed', seq, m[10] or '', m[11] or '', tenant}
    else
      redis.call('HSET', record, 'inflight', ARGV[3] .. '|' .. ARGV[2], 'submittedAt', ARGV[2], 'attempts', (tonumber(m[3]) or 0) + 1)
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      claims[i - 1] = {'ok', m[4], m[5], m[6], m[7] or ''}
    end
  end
end
return claims
`

/**
 * Cancels messages of one tenant that have not been submitted (docs/api.md#cancel): a QUEUED message
 * with no in-flight marker (no submission under way, and none whose outcome is unknown) becomes
 * CANCELED, an event of source "api". Decided in one step on the record, like a claim: either the
 * cancel wins and the message is never submitted, or the claim won and the cancel is refused.
 * Another tenant's message is "missing", exactly like an unknown one.
 *
 * KEYS: the records. ARGV: 1 the tenants' key root, 2 now (ms), 3 the tenant, 4… the message ids
 * Returns per message {"missing"} | {"refused", status} | {"canceled", seq, callbackUrl, reference, job}
 */
export const CANCEL = `${PRELUDE}
local results = {}
for i = 1, #KEYS do
  local record, id = KEYS[i], ARGV[i + 3]
  local m = redis.call('HMGET', record, 'status', 'inflight', 'tenant', 'seq', 'callbackUrl', 'reference', 'job')
  if not m[1] or (m[3] or '${DEFAULT_TENANT}') ~= ARGV[3] then results[i] = {'missing'}
  elseif m[1] ~= 'QUEUED' or m[2] then results[i] = {'refused', m[1]}
  else
    local seq = tonumber(m[4]) + 1
    change(record, id, ARGV[1], ARGV[3], 'QUEUED', 'CANCELED', seq, 'api', ARGV[2], '', '', {})
    results[i] = {'canceled', seq, m[5] or '', m[6] or '', m[7] or ''}
  end
end
return results
`

/**
 * Takes messages past Infobip's logs window out of the open index (what the reconciler looks up);
 * those still PENDING go into the stale index, with their submission time. Checked per message at the
 * time of the call, so that a report applied meanwhile is not undone.
 *
 * KEYS: 1 open index, 2 stale index, 3… the records. ARGV: 1 the window's start (ms), 2… the ids
 */
export const RETIRE = `
local before = tonumber(ARGV[1])
for i = 3, #KEYS do
  local id = ARGV[i - 1]
  local submitted = redis.call('ZSCORE', KEYS[1], id)
  if submitted and tonumber(submitted) < before then
    redis.call('ZREM', KEYS[1], id)
    if redis.call('HGET', KEYS[i], 'status') == 'PENDING' then redis.call('ZADD', KEYS[2], submitted, id) end
  end
end
return 1
`

/**
 * A fixed window shared by every process (one second of submissions, one minute of logs calls):
 * reserves `n` and returns 1, or returns 0 when the window's budget is spent. A request larger than
 * the whole budget still goes alone into an empty window, or it could never be sent.
 *
 * KEYS: 1 the window's key. ARGV: 1 n, 2 limit per window, 3 the window's length (s)
 */
export const RESERVE_BUDGET = `
local n = tonumber(ARGV[1])
local used = redis.call('INCRBY', KEYS[1], n)
if used == n then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) + 1) return 1 end
if used > tonumber(ARGV[2]) then redis.call('DECRBY', KEYS[1], n) return 0 end
return 1
`
