import { createHash } from 'node:crypto'
import t from 'tap'
import { loadTenants } from '../src/tenants.js'
import { writeTenantsFile } from './helpers/index.js'

const KEY_A = 'sk_acme_live_0123456789abcdef'
const KEY_B = 'sk_beta_live_0123456789abcdef'
const SECRET = `whsec_${Buffer.from('a-signing-secret-of-32-bytes-....').toString('base64')}`
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`

t.test('tenants come from the file and API_KEYS; a key finds its tenant, plain or hashed', async (t) => {
  const file = writeTenantsFile(t, {
    acme: {
      apiKeys: [KEY_A],
      rateLimitPerMinute: 600,
      defaultSender: 'ACME',
      allowedSenders: ['ACME', 'ACMEALERTS'],
      inboundNumbers: ['41790000000'],
      callbackSigningSecret: SECRET,
    },
    beta: { apiKeys: [sha(KEY_B)] },
  })
  const tenants = loadTenants({ TENANTS_FILE: file, API_KEYS: 'dev-api-key,other-dev-key' })
  t.same(tenants.names.sort(), ['acme', 'beta', 'default'])
  t.match(tenants.authenticate(KEY_A), { name: 'acme', rateLimitPerMinute: 600, defaultSender: 'ACME', callbackSigningSecret: SECRET })
  t.equal(tenants.authenticate(KEY_B)?.name, 'beta', 'a sha256: entry accepts the key it hashes')
  t.equal(tenants.authenticate(sha(KEY_B)), undefined, 'the hash itself is not a key')
  t.equal(tenants.authenticate('other-dev-key')?.name, 'default')
  t.equal(tenants.authenticate('sk_acme_live_0123456789abcdeX'), undefined)
  t.equal(tenants.authenticate(''), undefined)
})

t.test('every mistake in the file stops start-up with one line naming the tenant and the field', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ Acme: { apiKeys: [KEY_A] } }, /tenant "Acme": name must be 1–32 characters/],
    [{ acme: { apiKeys: [] } }, /tenant "acme": apiKeys must be a non-empty array/],
    [{ acme: { apiKeys: ['short-key'] } }, /tenant "acme": apiKeys\/0 must be at least 16 characters/],
    [{ acme: { apiKeys: ['sha256:abc'] } }, /tenant "acme": apiKeys\/0 must be sha256: and 64 lowercase hex digits/],
    [{ acme: { apiKeys: [KEY_A], rateLimit: 5 } }, /tenant "acme": rateLimit is not a known field/],
    [{ acme: { apiKeys: [KEY_A], rateLimitPerMinute: '600' } }, /tenant "acme": rateLimitPerMinute must be a positive integer/],
    [{ acme: { apiKeys: [KEY_A], defaultSender: 'A SENDER TOO LONG' } }, /tenant "acme": defaultSender must be 1–11 alphanumerics/],
    [{ acme: { apiKeys: [KEY_A], allowedSenders: ['ACME', 'bad!'] } }, /tenant "acme": allowedSenders\/1 must be a sender/],
    [{ acme: { apiKeys: [KEY_A], defaultSender: 'OTHER', allowedSenders: ['ACME'] } }, /tenant "acme": defaultSender must be one of allowedSenders/],
    [{ acme: { apiKeys: [KEY_A], callbackSigningSecret: 'secret' } }, /tenant "acme": callbackSigningSecret must be whsec_/],
    [{ acme: { apiKeys: [KEY_A], callbackSigningSecret: 'whsec_c2hvcnQ=' } }, /callbackSigningSecret must be whsec_ and the base64 of at least 24/],
    [{ acme: { apiKeys: [KEY_A], inboundNumbers: ['+41 79'] } }, /tenant "acme": inboundNumbers\/0 must be digits only/],
    [{ acme: { apiKeys: [KEY_A] }, beta: { apiKeys: [sha(KEY_A)] } }, /tenant beta: apiKeys has a key that is in tenants acme and beta/],
    [{ acme: { apiKeys: [KEY_A, KEY_A] } }, /apiKeys has a key that is twice in tenant acme/],
  ]
  for (const [tenants, message] of cases) {
    const file = writeTenantsFile(t, tenants as Record<string, Record<string, unknown>>)
    t.throws(() => loadTenants({ TENANTS_FILE: file }), { name: 'ConfigError', message }, String(message))
    try {
      loadTenants({ TENANTS_FILE: file })
    } catch (error) {
      const text = (error as Error).message
      t.notOk(text.includes('\n'), 'one line')
      t.notOk(text.includes(KEY_A) || text.includes(sha(KEY_A).slice(7)), 'no key in the message')
    }
  }
  t.throws(() => loadTenants({ TENANTS_FILE: writeTenantsFile(t, { acme: { apiKeys: [KEY_A] } }), API_KEYS: KEY_A }), {
    message: /apiKeys has a key that is in tenants acme and default/,
  })
  t.throws(() => loadTenants({ TENANTS_FILE: writeTenantsFile(t, { acme: { apiKeys: [KEY_A], allowedSenders: ['ACME'] } }), INFOBIP_SENDER: 'InfoSMS' }), {
    message: /tenant "acme": defaultSender is required: allowedSenders does not include INFOBIP_SENDER \(InfoSMS\)/,
  })
  t.throws(() => loadTenants({ TENANTS_FILE: '/nonexistent/tenants.json' }), { message: /TENANTS_FILE \/nonexistent\/tenants.json cannot be read/ })
  t.throws(() => loadTenants({}), { message: 'Invalid configuration: API_KEYS or TENANTS_FILE is required (see .env.example)' })
  t.same(loadTenants({}, { requireKeys: false }).names, ['default'], 'workers need no keys')
})
