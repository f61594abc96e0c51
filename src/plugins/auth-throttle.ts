import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { HttpError } from '../errors.js'

const WINDOW_SECONDS = 60
/** How long this process trusts its last reading of an address's count. */
const CACHE_MS = 1000
/** Addresses remembered in one minute, at most: a flood of addresses only costs Redis reads. */
const MAX_CACHED = 10_000

/** The failures of `ip` in the fixed window `minute` (Unix time / 60 s). */
export const authFailuresKey = (prefix: string, ip: string, minute: number): string => `${prefix}:authfail:${ip}:${minute}`

export interface AuthFailures {
  /** Seconds until `request.ip` may present a secret again: 0 unless it has used up this minute's failures. */
  retryAfter(request: FastifyRequest): Promise<number>
  /** Throws a 429, with Retry-After set on `reply`, while `request.ip` must wait. */
  check(request: FastifyRequest, reply: FastifyReply): Promise<void>
  /** Counts one failed authentication of `request.ip`; a successful one is never counted. */
  record(request: FastifyRequest): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Per-address throttle of failed authentications, shared by every secret the API checks. */
    authFailures: AuthFailures
  }
}

/**
 * Guessing a secret costs one failure; after AUTH_FAILURES_PER_MINUTE (default 20) of them an address is refused
 * until its minute ends, the right secret included, so that a guess cannot be confirmed. The counters
 * live in Redis, so every API process shares them. When Redis does not answer, the throttle lets the
 * request through (fail open): the secret is still compared, and a route that needs Redis answers
 * 503 on its own; failing closed would turn an outage of the counters into one of every route.
 */
export default fp(
  async function authThrottlePlugin(app) {
    const { redis, config } = app
    const window = () => {
      const now = Date.now() / 1000
      const minute = Math.floor(now / WINDOW_SECONDS)
      return { minute, left: Math.max(1, Math.ceil((minute + 1) * WINDOW_SECONDS - now)) }
    }
    const key = (request: FastifyRequest, minute: number) => authFailuresKey(config.KEY_PREFIX, request.ip, minute)
    // This process's last reading of each address's count, this minute: a client that authenticates
    // right costs one Redis read a second, not one per request. What other processes counted shows
    // within that second, and what this one counts at once.
    let cacheMinute = -1
    const counts = new Map<string, { count: number; at: number }>()
    const cached = (ip: string, minute: number) => {
      if (minute !== cacheMinute || counts.size > MAX_CACHED) {
        counts.clear()
        cacheMinute = minute
      }
      const entry = counts.get(ip)
      return entry && Date.now() - entry.at < CACHE_MS ? entry.count : undefined
    }

    const retryAfter = async (request: FastifyRequest) => {
      const { minute, left } = window()
      try {
        let count = cached(request.ip, minute)
        if (count === undefined) {
          count = Number(await redis.get(key(request, minute)))
          counts.set(request.ip, { count, at: Date.now() })
        }
        return count >= config.AUTH_FAILURES_PER_MINUTE ? left : 0
      } catch (err) {
        request.log.warn({ err }, 'failed-authentication throttle skipped: Redis did not answer')
        return 0
      }
    }

    app.decorate('authFailures', {
      retryAfter,
      async check(request, reply) {
        const wait = await retryAfter(request)
        if (wait === 0) return
        reply.header('retry-after', String(wait))
        throw new HttpError(429, `Too many failed authentications from this address; retry in ${wait} s`, 'TOO_MANY_AUTH_FAILURES')
      },
      async record(request) {
        const { minute } = window()
        const failures = key(request, minute)
        try {
          // The key is read only during its own minute, so a TTL of one window outlives it.
          const replies = await redis.multi().incr(failures).expire(failures, WINDOW_SECONDS).exec()
          const count = Number(replies?.[0]?.[1])
          if (Number.isFinite(count) && minute === cacheMinute) counts.set(request.ip, { count, at: Date.now() })
        } catch (err) {
          request.log.warn({ err }, 'failed authentication not counted: Redis did not answer')
        }
      },
    } satisfies AuthFailures)
  },
  { name: 'auth-throttle', dependencies: ['store'] },
)
