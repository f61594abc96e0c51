import fc from 'fast-check'
import t from 'tap'
import { callbackUrlProblem, isForbiddenAddress } from '../src/callback-url.js'
import { AUTH, buildTestApp, testConfig } from './helpers/index.js'

/** An address as a request carries it: WHATWG URL parsing rewrites `::127.0.0.1` to `::7f00:1`. */
const asUrlHost = (address: string): string => new URL(`http://[${address}]/`).hostname.slice(1, -1)

const hex = (a: string): string[] => {
  const [b0, b1, b2, b3] = a.split('.').map(Number) as [number, number, number, number]
  return [((b0 << 8) | b1).toString(16), ((b2 << 8) | b3).toString(16)]
}

/** The IPv6 forms that reach an IPv4 address. */
const EMBEDDINGS: Record<string, (a: string) => string> = {
  mapped: (a) => `::ffff:${a}`,
  compatible: (a) => `::${a}`,
  nat64: (a) => `64:ff9b::${a}`,
  '6to4': (a) => `2002:${hex(a).join(':')}::1`,
}

const SPECIAL_IPV4 = [
  '127.0.0.1',
  '10.1.2.3',
  '172.16.0.5',
  '192.168.1.1',
  '169.254.169.254',
  '169.254.170.2',
  '100.64.0.1',
  '0.0.0.0',
  '168.63.129.16',
  '8.8.8.8',
]

t.test('an IPv6 address that carries an IPv4 one is refused exactly when the IPv4 address is', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.constantFrom(...SPECIAL_IPV4)), fc.constantFrom(...Object.keys(EMBEDDINGS)), (ipv4, kind) => {
      const ipv6 = EMBEDDINGS[kind]!(ipv4)
      return isForbiddenAddress(ipv6) === isForbiddenAddress(ipv4) && isForbiddenAddress(asUrlHost(ipv6)) === isForbiddenAddress(ipv4)
    }),
    { numRuns: 2000 },
  )
  for (const address of ['::127.0.0.1', '::7f00:1', '::169.254.169.254', '::a9fe:a9fe', '64:ff9b::10.0.0.1', '2002:7f00:1::1', '2002:c0a8:101::']) {
    t.ok(isForbiddenAddress(address), `${address} is refused`)
  }
  for (const address of ['::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::1', '2606:4700:4700::1111', '93.184.216.34']) {
    t.notOk(isForbiddenAddress(address), `${address} is allowed`)
  }
})

t.test('cloud metadata endpoints, Teredo, NAT64 local-use and other special ranges are refused', async (t) => {
  const refused = [
    '169.254.169.254', // AWS, GCP, Azure…
    'fd00:ec2::254', // AWS over IPv6
    '169.254.170.2', // AWS ECS
    '100.100.100.200', // Alibaba Cloud
    '168.63.129.16', // Azure host endpoint: ordinary unicast otherwise
    '::ffff:168.63.129.16',
    '64:ff9b::168.63.129.16',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo
    '64:ff9b:1::a00:1', // NAT64 local-use prefix
    '192.0.2.1', // documentation
    '198.18.0.1', // benchmarking
    '240.0.0.1',
    '255.255.255.255',
    '224.0.0.1',
    'ff02::1',
    'fe80::1',
    '2001:db8::1',
    'not an address',
  ]
  for (const address of refused) t.ok(isForbiddenAddress(address), `${address} is refused`)
})

t.test('callbackUrlProblem refuses IPv4-compatible and metadata hosts as a URL spells them', async (t) => {
  for (const url of ['http://[::127.0.0.1]/x', 'http://[::169.254.169.254]/latest/meta-data/', 'http://168.63.129.16/machine', 'http://[64:ff9b::7f00:1]/x']) {
    t.match(await callbackUrlProblem(url, false), /^host .* is not a public address$/, url)
  }
  t.equal(await callbackUrlProblem('https://93.184.216.34/hook', false), undefined)
  t.equal(await callbackUrlProblem('https://[64:ff9b::5db8:d822]/hook', false), undefined, 'a public host behind NAT64')
})

t.test('ports below 1024 other than 80 and 443 are refused, even with allowPrivate', async (t) => {
  for (const allowPrivate of [false, true]) {
    for (const port of [0, 22, 25, 1023]) {
      t.equal(await callbackUrlProblem(`http://93.184.216.34:${port}/hook`, allowPrivate), `port ${port} is not allowed (use 80, 443 or 1024–65535)`)
    }
    for (const url of [
      'http://93.184.216.34/hook',
      'https://93.184.216.34/hook',
      'http://93.184.216.34:443/hook',
      'https://93.184.216.34:80/hook',
      'https://93.184.216.34:8443/hook',
    ]) {
      t.equal(await callbackUrlProblem(url, allowPrivate), undefined, url)
    }
  }
  t.equal(await callbackUrlProblem('http://127.0.0.1:22/hook', true), 'port 22 is not allowed (use 80, 443 or 1024–65535)')
  t.equal(await callbackUrlProblem('http://127.0.0.1:4000/hook', true), undefined, 'a receiver on a developer machine')
  t.equal(await callbackUrlProblem('http://127.0.0.1:6379/hook', true), undefined, 'the rule is about system ports only')
})

t.test('only http and https URLs are accepted', async (t) => {
  for (const url of ['ftp://93.184.216.34/x', 'file:///etc/passwd', 'gopher://93.184.216.34:1234/x', 'ws://93.184.216.34/x']) {
    t.equal(await callbackUrlProblem(url, true), 'must be an http or https URL', url)
  }
  t.equal(await callbackUrlProblem('not a url', true), 'must be a valid URL')
})

t.test('the API answers 400 with the port rule', async (t) => {
  const app = await buildTestApp(t, testConfig('callback-url', { CALLBACK_ALLOW_PRIVATE: true }))
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: AUTH,
    payload: { to: '+41793026727', text: 'x', callbackUrl: 'http://127.0.0.1:25/x' },
  })
  t.equal(res.statusCode, 400)
  t.equal(res.json().message, 'body/callbackUrl is refused: port 25 is not allowed (use 80, 443 or 1024–65535)')
})
