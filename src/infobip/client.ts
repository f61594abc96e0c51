import { Pool } from 'undici'
import type { Config } from '../config.js'
import { dlrUrl } from '../config.js'
import { classifySendAnswer, errorText, v2Body, v3Body, type InfobipReport, type SubmitOutcome } from './requests.js'
import type { Submission } from '../domain/message.js'

/** Infobip's logs API takes at most 2,048 characters of comma-separated ids per call. */
const LOGS_IDS_MAX_CHARS = 2048
const LOGS_LIMIT = 1000

export class InfobipLookupError extends Error {
  override name = 'InfobipLookupError'
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

  constructor(config: Config, connections = config.SEND_CONCURRENCY) {
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
   * 2,048-character limit of `messageId` allows. Throws `InfobipLookupError` when a call fails.
   */
  async logs(ids: string[]): Promise<InfobipReport[]> {
    const found: InfobipReport[] = []
    for (const chunk of chunkIds(ids)) {
      const query = new URLSearchParams({ messageId: chunk.join(','), limit: String(LOGS_LIMIT) })
      let response
      try {
        response = await this.#request('GET', `/sms/3/logs?${query.toString()}`)
      } catch (error) {
        throw new InfobipLookupError(`logs lookup failed: ${(error as Error).message}`)
      }
      if (response.status !== 200) throw new InfobipLookupError(`logs lookup answered ${response.status}: ${errorText(response.json)}`)
      const results = (response.json as { results?: unknown }).results
      if (Array.isArray(results)) found.push(...(results as InfobipReport[]))
    }
    return found
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
