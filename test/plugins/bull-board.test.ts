import t from 'tap'
import type { CallbackPayload } from '../../src/callbacks.js'
import { maskJobData, maskUrl } from '../../src/plugins/bull-board.js'
import { QUEUE } from '../../src/queues.js'
import { buildTestApp, DLR_TOKEN, testConfig, TEST_CLUSTER } from '../helpers/index.js'
import { v2Report, v3Report } from '../helpers/reports.js'
if (TEST_CLUSTER) {
  t.plan(0, 'its URLs name the queues of one partition (test/redis/cluster.test.ts covers the dashboard of three)')
} else {
  const USER = 'ops'
  const PASSWORD = 'board-password-0123'
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  const OPS = { authorization: basic(USER, PASSWORD) }

  const app = await buildTestApp(t, testConfig('bull-board', { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD }))

  interface BoardJob {
    id: string
    data: unknown
  }
  interface BoardQueue {
    name: string
    readOnlyMode: boolean
    counts: Record<string, number>
    jobs: BoardJob[]
  }
  const boardQueues = async (activeQueue?: string) => {
    const query = activeQueue ? `?activeQueue=${activeQueue}&status=latest&page=1&jobsPerPage=10` : ''
    const res = await app.inject({ url: `/admin/queues/api/queues${query}`, headers: OPS })
    return res.json<{ queues: BoardQueue[] }>().queues
  }

  t.test('every dashboard URL needs the Basic credentials', async (t) => {
    const urls = ['/admin/queues', '/admin/queues/queue/send', '/admin/queues/api/queues', '/admin/queues/static/favicon-32x32.png']
    const wrong = [undefined, basic(USER, 'wrong'), basic('someone', PASSWORD), basic(USER, `${PASSWORD}x`), basic('', ''), `Bearer ${PASSWORD}`, 'Basic !!!']
    // Each URL from an address of its own, so that the failed-authentication throttle stays out of it.
    for (const [i, url] of urls.entries()) {
      for (const authorization of wrong) {
        const res = await app.inject({ url, remoteAddress: `198.51.100.${i + 1}`, headers: authorization === undefined ? {} : { authorization } })
        t.equal(res.statusCode, 401, `${url} with ${authorization ?? 'nothing'}`)
        t.match(res.headers['www-authenticate'], /^Basic realm=/)
      }
      t.equal((await app.inject({ url, headers: OPS })).statusCode, 200, `${url} with the right credentials`)
    }
  })

  t.test('the page and the API list every queue, read-only by default', async (t) => {
    const page = await app.inject({ url: '/admin/queues', headers: OPS })
    t.match(page.headers['content-type'], /text\/html/)
    t.match(page.body, /<base href="\/admin\/queues\/"/)
    const queues = await boardQueues()
    t.same(queues.map((q) => q.name).sort(), Object.values(QUEUE).sort())
    t.ok(queues.every((q) => q.readOnlyMode))
  })

  t.test('the dashboard keeps helmet, with a CSP its page can live with', async (t) => {
    const res = await app.inject({ url: '/admin/queues', headers: OPS })
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.ok(res.headers['strict-transport-security'])
    const csp = String(res.headers['content-security-policy'])
    t.match(csp, /script-src 'self'(;|$)/)
    t.match(csp, /frame-ancestors 'none'/)
    t.notMatch(csp, /upgrade-insecure-requests/, 'assets load over plain HTTP too')
    // The API's own routes keep helmet's defaults.
    t.match((await app.inject({ url: '/health' })).headers['content-security-policy'], /upgrade-insecure-requests/)
  })

  t.test('read-only: retry, clean and remove are refused', async (t) => {
    const job = await app.queues.send.partitions[0]!.add('send', { ids: ['msg_readonly'] }, { delay: 60_000 })
    for (const url of [
      '/admin/queues/api/queues/send/retry/failed',
      '/admin/queues/api/queues/send/clean/delayed',
      `/admin/queues/api/queues/send/${job.id}/clean`,
      `/admin/queues/api/queues/send/${job.id}/promote`,
      '/admin/queues/api/queues/send/empty',
    ]) {
      const res = await app.inject({ method: 'PUT', url, headers: OPS })
      t.equal(res.statusCode, 405, url)
    }
    t.equal(await job.getState(), 'delayed', 'the job is untouched')
    await job.remove()
  })

  t.test('BULL_BOARD_READ_ONLY=false lets operators act on jobs', async (t) => {
    const writable = await buildTestApp(t, testConfig('bull-board-rw', { BULL_BOARD_USER: USER, BULL_BOARD_PASSWORD: PASSWORD, BULL_BOARD_READ_ONLY: false }))
    const job = await writable.queues.send.partitions[0]!.add('send', { ids: ['msg_rw'] }, { delay: 60_000 })
    const res = await writable.inject({ method: 'PUT', url: `/admin/queues/api/queues/send/${job.id}/clean`, headers: OPS })
    t.equal(res.statusCode, 204)
    t.equal(await writable.queues.send.getJob(job.id!), undefined)
  })

  t.test('job data is shown without message text or full phone numbers', async (t) => {
    const reports = [v3Report('msg_a', undefined, { text: 'Your code is 4711' }), v2Report('msg_b', undefined, { to: '+41 79 555 12 34', from: '41791112233' })]
    const posted = await app.inject({ method: 'POST', url: `/infobip-dlr?token=${DLR_TOKEN}`, payload: { results: reports } })
    t.equal(posted.statusCode, 200)

    const dlr = (await boardQueues('dlr')).find((q) => q.name === 'dlr')!
    t.equal(dlr.counts.waiting, 1)
    const listed = dlr.jobs[0]!
    const single = await app.inject({ url: `/admin/queues/api/queues/dlr/${listed.id}`, headers: OPS })
    t.equal(single.statusCode, 200)
    for (const body of [JSON.stringify(listed), single.body]) {
      for (const secret of ['41793026727', '41795551234', '79 555 12 34', '41791112233', 'Your code is']) t.notOk(body.includes(secret), `no ${secret}`)
    }
    const [v3, v2] = (listed.data as { results: Record<string, unknown>[] }).results
    t.match(v3, { messageId: 'msg_a', to: '*******6727', sender: 'InfoSMS', status: { name: 'DELIVERED_TO_HANDSET' } })
    t.notOk('text' in v3!)
    t.match(v2, { messageId: 'msg_b', to: '*******1234', from: '*******2233' })

    // A send job names message ids only, and is shown as it is.
    await app.queues.send.partitions[0]!.add('send', { ids: ['msg_x', 'msg_y'] }, { delay: 60_000 })
    const send = (await boardQueues('send')).find((q) => q.name === 'send')!
    t.same(
      send.jobs.map((j) => j.data),
      [{ ids: ['msg_x', 'msg_y'] }],
    )
  })

  t.test('URLs in job data are shown without userinfo, query values or fragment', async (t) => {
    const url = 'https://hook-user:hook-pass@hooks.example.com/sms/status?token=cb-secret-1&tenant=acme#frag-secret'
    const masked = 'https://***@hooks.example.com/sms/status?token=***&tenant=***#***'
    const payload: CallbackPayload = {
      eventId: 'msg_cb-2',
      messageId: 'msg_cb',
      reference: null,
      status: 'DELIVERED',
      previousStatus: 'PENDING',
      final: true,
      seq: 2,
      at: new Date().toISOString(),
      infobip: { status: null, error: null },
    }
    await app.queues.callback.partitions[0]!.add('callback', { url, payload }, { delay: 60_000 })
    // Any queue's data: a message's callbackUrl, wherever it sits.
    await app.queues.reconcile.partitions[0]!.add('reconcile', { messages: [{ id: 'msg_cb', callbackUrl: url }] }, { delay: 60_000 })
    for (const name of ['callback', 'reconcile']) {
      const queue = (await boardQueues(name)).find((q) => q.name === name)!
      const job = queue.jobs.find((j) => JSON.stringify(j.data).includes('msg_cb'))!
      const single = await app.inject({ url: `/admin/queues/api/queues/${name}/${job.id}`, headers: OPS })
      t.equal(single.statusCode, 200)
      for (const body of [JSON.stringify(queue), single.body]) {
        for (const secret of ['hook-user', 'hook-pass', 'cb-secret-1', 'acme', 'frag-secret']) t.notOk(body.includes(secret), `${name}: no ${secret}`)
      }
      t.match(job.data, name === 'callback' ? { url: masked, payload: { messageId: 'msg_cb' } } : { messages: [{ callbackUrl: masked }] }, name)
    }
  })

  t.test('maskUrl: what is masked and what is kept', async (t) => {
    const cases: [string, string][] = [
      ['https://user:pass@host/path?token=x', 'https://***@host/path?token=***'],
      ['http://user@host:8080/a?b', 'http://***@host:8080/a?***'],
      ['https://:pass@host/', 'https://***@host/'],
      ['https://host/path', 'https://host/path'],
      ['https://host/p?a=1&&b=&c', 'https://host/p?a=***&&b=***&***'],
      ['HTTPS://U:P@Host', 'https://***@host/'],
      ['https:u:p@host/x', 'https://***@host/x'],
    ]
    for (const [url, masked] of cases) t.equal(maskUrl(url), masked, url)
    for (const kept of ['mailto:a@b.example', 'localhost:3000', 'ftp://u:p@host/', 'not a url', '', 'InfoSMS']) t.equal(maskUrl(kept), kept, kept)
    t.same(maskJobData({ list: ['https://u:p@h/'], nested: { callbackUrl: 'https://h/?k=v' } }), {
      list: ['https://***@h/'],
      nested: { callbackUrl: 'https://h/?k=***' },
    })
  })

  t.test('maskJobData: nested, numeric, alphanumeric senders', async (t) => {
    t.same(maskJobData({ message: { to: 41793026727, from: 'MyBrand', text: 'hi', destinations: [{ to: '+41793026727' }] }, count: 3, to: 'n/a' }), {
      message: { to: '*******6727', from: 'MyBrand', destinations: [{ to: '*******6727' }] },
      count: 3,
      to: 'n/a',
    })
    t.equal(maskJobData(null), null)
    t.equal(maskJobData('text'), 'text')
  })

  t.test('not mounted without both credentials', async (t) => {
    const partial: Record<string, string>[] = [{}, { BULL_BOARD_USER: USER }, { BULL_BOARD_PASSWORD: PASSWORD }]
    for (const env of partial) {
      const bare = await buildTestApp(t, testConfig('bull-board-off', env))
      for (const url of ['/admin/queues', '/admin/queues/api/queues']) {
        t.equal((await bare.inject({ url, headers: OPS })).statusCode, 404, `${url} with ${JSON.stringify(env)}`)
      }
    }
  })
}
