import { lookup } from 'node:dns/promises'
import { isIP, type LookupFunction } from 'node:net'
import { lookup as lookupCallback } from 'node:dns'
import ipaddr from 'ipaddr.js'

/**
 * SSRF protection for client callback URLs (docs/api.md#send-one-message, docs/statuses.md#client-callbacks): a host that is, or resolves to, a
 * loopback, private, link-local, unique-local, carrier-grade NAT, unspecified, reserved or cloud-metadata
 * address, or an IPv6 address that carries one, is refused, and so is a port below 1024 other than 80
 * and 443. Checked when a message is accepted, again before every delivery, and at every connection
 * through `guardedLookup`, so that a DNS answer that changes in between (rebinding) is caught too.
 */

/**
 * Cloud metadata and host endpoints. Most already sit in a forbidden range; 168.63.129.16 (Azure's
 * host endpoint) is ordinary unicast and would pass without this list.
 */
const METADATA = new Set([
  '169.254.169.254', // AWS, GCP, Azure, Oracle, OpenStack instance metadata
  'fd00:ec2::254', // AWS instance metadata over IPv6
  '169.254.170.2', // AWS ECS task metadata and credentials
  '100.100.100.200', // Alibaba Cloud instance metadata
  '168.63.129.16', // Azure host endpoint (WireServer)
])

/** IPv6 prefixes whose last 32 bits are an IPv4 address that the packet reaches. */
const IPV4_IN_LAST_32_BITS = [
  ipaddr.IPv6.parseCIDR('::ffff:0:0/96'), // IPv4-mapped
  ipaddr.IPv6.parseCIDR('::/96'), // IPv4-compatible (deprecated, but still parsed and routed by some stacks)
  ipaddr.IPv6.parseCIDR('64:ff9b::/96'), // NAT64 well-known prefix: what DNS64 answers for IPv4-only hosts
]
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16') // 6to4: the IPv4 address is bits 16–47

/** The ports callbacks may use: the web's own and the unprivileged range, never a system service's (ssh, smtp…). */
const PORT_RULE = 'use 80, 443 or 1024–65535'

export function isForbiddenAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return true
  const ip = ipaddr.parse(address)
  if (ip.kind() === 'ipv6') {
    const embedded = embeddedIPv4(ip as ipaddr.IPv6)
    // An IPv6 address that carries an IPv4 one is as good or as bad as the IPv4 address it reaches.
    if (embedded) return isForbiddenAddress(embedded.toString())
  }
  // Everything that is not ordinary unicast (reserved, multicast, Teredo, NAT64 local-use…) is refused.
  return METADATA.has(ip.toString()) || ip.range() !== 'unicast'
}

function embeddedIPv4(ip: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const bytes = ip.toByteArray()
  if (IPV4_IN_LAST_32_BITS.some((range) => ip.match(range))) return new ipaddr.IPv4(bytes.slice(12, 16))
  if (ip.match(SIX_TO_FOUR)) return new ipaddr.IPv4(bytes.slice(2, 6))
  return undefined
}

/** Why a callback URL is refused, or undefined when it may be used. */
export async function callbackUrlProblem(url: string, allowPrivate: boolean): Promise<string | undefined> {
  const problem = callbackUrlProblemWithoutDns(url, allowPrivate)
  if (problem !== undefined || allowPrivate) return problem
  const host = hostOf(new URL(url))
  if (isIP(host)) return undefined
  let addresses: string[]
  try {
    addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)
  } catch {
    return `host ${host} cannot be resolved`
  }
  if (addresses.length === 0 || addresses.some(isForbiddenAddress)) return `host ${host} is not a public address`
  return undefined
}

/**
 * Why a callback URL is refused, as far as can be told without DNS: its scheme, its port, and a host
 * that is an IP literal. The callback worker checks this before every delivery: undici connects to
 * an IP host without calling `lookup`, so `guardedLookup` never sees it. The port rule holds even
 * with `allowPrivate` (CALLBACK_ALLOW_PRIVATE), which is for receivers on a developer's machine.
 */
export function callbackUrlProblemWithoutDns(url: string, allowPrivate: boolean): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'must be a valid URL'
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must be an http or https URL'
  const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port)
  if (port !== 80 && port !== 443 && port < 1024) return `port ${port} is not allowed (${PORT_RULE})`
  const host = hostOf(parsed)
  if (!allowPrivate && isIP(host) && isForbiddenAddress(host)) return `host ${host} is not a public address`
  return undefined
}

/** The host as DNS or an address parser wants it: an IPv6 literal without its brackets. */
const hostOf = (url: URL): string => url.hostname.replace(/^\[|\]$/g, '')

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
