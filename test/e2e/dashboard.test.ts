import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { chromium, type Page } from 'playwright-core'
import t from 'tap'
import { QUEUE } from '../../src/queues.js'
import { API_KEY, buildTestApp, DLR_TOKEN, ROOT, testConfig } from '../helpers/index.js'
import { v3Report } from '../helpers/reports.js'

/**
 * Bull Board in a real headless Chromium (Debian's package, driven by playwright-core, which never
 * downloads a browser): it logs in with Basic auth, renders under the dashboard's helmet headers,
 * shows every queue with its job count, and shows job data masked.
 */
const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOTS = join(ROOT, 'test/e2e/screenshots')
const USER = 'ops'
const PASSWORD = 'e2e-board-password'

if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`)

// A non-loopback address when the machine has one: browsers exempt loopback from
// `upgrade-insecure-requests`, so only a LAN-like address shows whether the dashboard's assets
// load over plain HTTP under its CSP.
const host =
  Object.values(networkInterfaces())
    .flat()
    .find((a) => a?.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1'

const app = await buildTestApp(t, testConfig('e2e-dashboard', { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD }))
await app.listen({ port: 0, host })
const base = `http://${host}:${(app.server.address() as { port: number }).port}`
t.comment(`dashboard at ${base}/admin/queues`)

// Two send jobs (no worker runs, so they wait), three dlr jobs, nothing in the other queues.
for (const to of ['+41 79 302 67 27', '+41 79 302 67 28']) {
  const res = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { authorization: `Bearer ${API_KEY}` },
    payload: { to, text: 'Your code is 4711' },
  })
  if (res.statusCode !== 202) throw new Error(`POST /messages answered ${res.statusCode}: ${res.body}`)
}
for (const id of ['msg_e2e_1', 'msg_e2e_2', 'msg_e2e_3']) {
  const res = await app.inject({
    method: 'POST',
    url: `/infobip-dlr?token=${DLR_TOKEN}`,
    payload: { results: [v3Report(id, undefined, { text: 'Your code is 4711' })] },
  })
  if (res.statusCode !== 200) throw new Error(`POST /infobip-dlr answered ${res.statusCode}: ${res.body}`)
}
const COUNTS: Record<string, number> = { ...Object.fromEntries(Object.values(QUEUE).map((name) => [name, 0])), send: 2, dlr: 3 }

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
})
t.teardown(() => browser.close())
await mkdir(SCREENSHOTS, { recursive: true })

/** A page with credentials that records what went wrong on our own origin. */
async function openPage(): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1280, height: 720 } })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems: string[] = []
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`)
  })
  // Only our origin: the page also asks Google Fonts, which an offline CI cannot reach.
  page.on('requestfailed', (request) => {
    if (request.url().startsWith(base)) problems.push(`failed: ${request.url()} ${request.failure()?.errorText}`)
  })
  page.on('response', (response) => {
    if (response.url().startsWith(base) && response.status() >= 400) problems.push(`${response.status()}: ${response.url()}`)
  })
  return { page, problems }
}

t.test('with a wrong password the browser gets 401 and no dashboard', async (t) => {
  const context = await browser.newContext({ httpCredentials: { username: USER, password: 'wrong' } })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const response = await page.goto(`${base}/admin/queues`)
  t.equal(response?.status(), 401)
  t.match(await response?.headerValue('www-authenticate'), /^Basic/)
  t.notMatch(await page.locator('body').innerText(), /callback/)
})

t.test('logged in, the overview shows every queue with its job count', async (t) => {
  const { page, problems } = await openPage()
  t.teardown(() => page.context().close())
  const response = await page.goto(`${base}/admin/queues`, { waitUntil: 'domcontentloaded' })
  t.equal(response?.status(), 200)
  t.match(await response?.headerValue('content-security-policy'), /script-src 'self'/)

  for (const [name, count] of Object.entries(COUNTS)) {
    const card = page
      .locator('li')
      .filter({ has: page.locator(`a[title="${name}"]`) })
      .filter({ hasText: /\d+ Jobs?/ })
    const label = count === 1 ? '1 Job' : `${count} Jobs`
    await card.getByText(label, { exact: true }).waitFor()
    t.pass(`${name}: ${label}`)
  }
  t.same(problems, [], 'no CSP violation, script error or failed request on our origin')
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard.png') })
})

t.test('a dlr job shows its reports without text or the full number', async (t) => {
  const { page, problems } = await openPage()
  t.teardown(() => page.context().close())
  await page.goto(`${base}/admin/queues/queue/dlr`, { waitUntil: 'domcontentloaded' })
  await page.getByRole('button', { name: 'expand JSON' }).first().click()
  await page.getByText('"*******6727"').first().waitFor()
  const shown = await page.locator('body').innerText()
  t.notOk(shown.includes('41793026727'), 'no full phone number')
  t.notOk(shown.includes('Your code is'), 'no message text')
  t.match(shown, /msg_e2e_/)
  t.same(problems, [])
  await page.screenshot({ path: join(SCREENSHOTS, 'dlr-job.png') })
})
