import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import type { Config } from '../config.js'
import { dlrUrl } from '../config.js'
import { classifySendAnswer, errorText, retryAfterMs, v2Body, v3Body, type InfobipReport, type SubmitOutcome } from './requests.js'
import type { Submission } from '../domain/message.js'

/** Infobip's logs API takes at most 2,048 characters of ids per call. */
const LOGS_IDS_MAX_CHARS = 2048
const LOGS_LIMIT = 1000
/** Infobip's limit on the logs API, for the whole account. */
export const LOGS_CALLS_PER_MINUTE = 120
/** How long one lookup waits through the logs API's 429s before it counts as failed. */
const LOGS_MAX_WAIT_MS = 60_000

export class InfobipLookupError extends Error {
  override name = 'InfobipLookupError'
}

/** Infobip answered 401 or 403: the API key is wrong, revoked or lacks a scope (docs/infobip.md#api-key-scopes). */
export class InfobipAuthError extends Error {
  override name = 'InfobipAuthError'
  constructor(
    readonly status: 401 | 403,
    detail: string,
  ) {
    super(`Infobip answered ${status}: ${detail}`)
  }
}

/** The logs API's budget, shared by every process: takes one call, or says how long to wait (ms) when spent. */
export type LogsBudget = () => Promise<number>

export interface InfobipClientOptions {
  connections?: number
  logsBudget?: LogsBudget
}

/**
 * The Infobip HTTP client (docs/infobip.md): v3 `/sms/3/messages` or v2 `/sms/2/text/advanced` to send,
 * `/sms/3/logs` to look messages up. Keeps a pool of keep-alive connections to the account's base URL.
 */
export class InfobipClient {
  readonly #pool: Pool
  readonly #headers: Record<string, string>
  readonly #timeoutMs: number
  readonly #api: Config['INFOBIP_API']
  readonly #webhook: { url: string }
  readonly #logsBudget: LogsBudget

  constructor(config: Config, { connections = config.SEND_CONCURRENCY, logsBudget = () => Promise.resolve(0) }: InfobipClientOptions = {}) {
    if (!config.INFOBIP_BASE_URL || !config.INFOBIP_API_KEY) throw new Error('INFOBIP_BASE_URL and INFOBIP_API_KEY are required')
    this.#pool = new Pool(config.INFOBIP_BASE_URL, { connections, keepAliveTimeout: 30_000 })
    this.#headers = {
      authorization: `App ${config.INFOBIP_API_KEY}`,
      'content-type': 'application/json',
      accept: 'application/json',
    }
    this.#timeoutMs = config.INFOBIP_TIMEOUT_MS
    this.#api = config.INFOBIP_API
    this.#webhook = { url: dlrUrl(config) }
    this.#logsBudget = logsBudget
  }

  async submit(messages: Submission[]): Promise<SubmitOutcome> {
    const [path, body] = this.#api === 'v2' ? ['/sms/2/text/advanced', v2Body(messages, this.#webhook)] : ['/sms/3/messages', v3Body(messages, this.#webhook)]
    let response
    try {
      response = await this.#request('POST', path, JSON.stringify(body))
    } catch (error) {
      return { kind: 'network', detail: (error as Error).message }
    }
    return classifySendAnswer(response.status, response.headers, response.json)
  }

  /**
   * Looks messages up in the logs API (never the read-once reports API), in as few calls as the
   * 2,048-character limit of `messageId` allows, each call taken from the shared budget. A 429 waits.
   * Throws `InfobipAuthError` on 401/403 and `InfobipLookupError` when a call fails otherwise.
   */
  async logs(ids: string[]): Promise<InfobipReport[]> {
    const found: InfobipReport[] = []
    for (const chunk of chunkIds(ids)) {
      // The parameter repeated, as Infobip's SDKs send an array.
      const query = new URLSearchParams(chunk.map((id): [string, string] => ['messageId', id]))
      query.set('limit', String(LOGS_LIMIT))
      const results = (await this.#logsCall(`/sms/3/logs?${query.toString()}`)).results
      if (Array.isArray(results)) found.push(...(results as InfobipReport[]))
    }
    return found
  }

  async #logsCall(path: string): Promise<{ results?: unknown }> {
    for (let waited = 0; ;) {
      for (let wait = await this.#logsBudget(); wait > 0; wait = await this.#logsBudget()) await sleep(wait)
      let response
      try {
        response = await this.#request('GET', path)
      } catch (error) {
        throw new InfobipLookupError(`logs lookup failed: ${(error as Error).message}`)
      }
      const { status, headers, json } = response
      if (status === 200) return json ?? {}
      if (status === 401 || status === 403) throw new InfobipAuthError(status, errorText(json))
      const wait = status === 429 ? (retryAfterMs(headers['retry-after']) ?? 1000) : undefined
      if (wait === undefined || waited + wait > LOGS_MAX_WAIT_MS) throw new InfobipLookupError(`logs lookup answered ${status}: ${errorText(json)}`)
      waited += wait
      await sleep(wait)
    }
  }

  async close(): Promise<void> {
    await this.#pool.close()
  }

  async #request(method: 'GET' | 'POST', path: string, body?: string) {
    const response = await this.#pool.request({
      method,
      path,
      headers: this.#headers,
      ...(body !== undefined ? { body } : {}),
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
    })
    const text = await response.body.text()
    let json: unknown = text
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      // Not JSON (a proxy's HTML error page, say): keep the text for the error message.
    }
    return { status: response.statusCode, headers: response.headers, json }
  }
}

function chunkIds(ids: string[]): string[][] {
  const chunks: string[][] = []
  let current: string[] = []
  let length = 0
  for (const id of ids) {
    if (current.length > 0 && (length + 1 + id.length > LOGS_IDS_MAX_CHARS || current.length >= LOGS_LIMIT)) {
      chunks.push(current)
      current = []
      length = 0
    }
    length += (current.length > 0 ? 1 : 0) + id.length
    current.push(id)
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}
