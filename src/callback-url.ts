import { lookup } from 'node:dns/promises'
import { isIP, type LookupFunction } from 'node:net'
import { lookup as lookupCallback } from 'node:dns'
import ipaddr from 'ipaddr.js'

/**
 * SSRF protection for client callback URLs (docs/api.md#send-one-message, docs/statuses.md#client-callbacks): a host that is, or resolves to, a
 * loopback, private, link-local, unique-local, carrier-grade NAT, unspecified or cloud-metadata
 * address is refused. Checked when a message is accepted, and again at every connection through
 * `guardedLookup`, so that a DNS answer that changes in between (rebinding) is caught too.
 */
const ALLOWED_RANGES = new Set(['unicast'])
const METADATA = new Set(['169.254.169.254', 'fd00:ec2::254', '100.100.100.200'])

export function isForbiddenAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return true
  let ip = ipaddr.parse(address)
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address()
  return METADATA.has(ip.toString()) || !ALLOWED_RANGES.has(ip.range())
}

/** Why a callback URL is refused, or undefined when it may be used. */
export async function callbackUrlProblem(url: string, allowPrivate: boolean): Promise<string | undefined> {
  let host: string
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  } catch {
    return 'must be a valid URL'
  }
  if (allowPrivate) return undefined
  let addresses: string[]
  try {
    addresses = isIP(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)
  } catch {
    return `host ${host} cannot be resolved`
  }
  if (addresses.length === 0 || addresses.some(isForbiddenAddress)) return `host ${host} is not a public address`
  return undefined
}

/** A `lookup` for sockets that refuses forbidden addresses at connection time. */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  lookupCallback(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 4)
    const list = addresses as unknown as { address: string; family: number }[]
    const bad = list.find((a) => isForbiddenAddress(a.address))
    if (bad || list.length === 0) {
      return callback(Object.assign(new Error(`callback host ${hostname} resolves to a forbidden address`), { code: 'EFORBIDDEN' }), '', 4)
    }
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: typeof list) => void)(null, list)
    return callback(null, list[0]!.address, list[0]!.family)
  })
}
