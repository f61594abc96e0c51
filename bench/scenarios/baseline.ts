import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { batchBody, bearer, messageBody } from '../load.js'
import { ROOT, stop } from '../processes.js'
import { cleanup } from '../redis.js'
import { progress, type Row } from '../report.js'
import { startApi } from '../service.js'
import { noFailures, prefixOf, WARM, warmThenFire, type Ctx } from './common.js'

/**
 * This build's API against earlier builds (git refs in BENCH_BASELINE, e.g. `v1.2.0,HEAD~3`), in one
 * run and on the same Redis, so that what a change costs is a ratio of two figures measured minutes
 * apart: POST /messages, and GET /messages (unfiltered and by number, over 2,000 stored messages).
 * Each earlier build is checked out into a temporary git worktree that shares this one's node_modules.
 */
/**
 * Runs `use` on the build of `ref`, checked out into a temporary git worktree that shares this one's
 * node_modules; `commit` is its short hash.
 */
export async function atBuild<T>(ref: string, use: (dir: string, commit: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'sms-baseline-'))
  try {
    execFileSync('git', ['worktree', 'add', '--detach', dir, ref], { cwd: ROOT, stdio: 'ignore' })
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
    return await use(dir, execFileSync('git', ['rev-parse', '--short', ref], { cwd: ROOT }).toString().trim())
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: ROOT, stdio: 'ignore' })
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function againstBaselines(ctx: Ctx, refs: string[]): Promise<Row[]> {
  const current = await measure(ctx, 'this build', undefined)
  const rows: Row[] = []
  for (const ref of refs) {
    await atBuild(ref, async (dir, commit) => {
      const baseline = await measure(ctx, `build ${commit}`, dir)
      for (const [route, figure] of Object.entries(current.figures)) {
        const before = baseline.figures[route]!
        rows.push({
          scenario: `${route}: this build vs ${ref} (${commit})`,
          figure,
          unit: 'req/s',
          ceiling: { name: `build ${commit}, same run`, value: before },
          checks: [...current.checks, ...baseline.checks],
        })
      }
    })
  }
  return rows
}

async function measure(ctx: Ctx, label: string, cwd: string | undefined) {
  const prefix = prefixOf(ctx, `baseline-${Math.random().toString(36).slice(2, 8)}`)
  const api = await startApi({ ...ctx.settings, cwd }, 'api', prefix)
  try {
    progress(`  ${label}: POST /messages`)
    const post = await warmThenFire(ctx, [api.child], `${api.url}/messages`, JSON.stringify(messageBody()), WARM.single, bearer)
    // 2,000 messages to one number beside those of the POST load: what the searches walk.
    for (let i = 0; i < 20; i++) {
      await fetch(`${api.url}/messages/batch`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: batchBody(100) })
    }
    progress(`  ${label}: GET /messages`)
    const list = await warmThenFire(ctx, [api.child], `${api.url}/messages?limit=50`, undefined, WARM.single, bearer)
    const byNumber = await warmThenFire(ctx, [api.child], `${api.url}/messages?to=%2B41793021100&limit=50`, undefined, WARM.single, bearer)
    return {
      figures: {
        'POST /messages': post.run.perSecond,
        'GET /messages?limit=50': list.run.perSecond,
        'GET /messages?to=…&limit=50': byNumber.run.perSecond,
      } as Record<string, number>,
      checks: [noFailures(`${label} POST`, post.run), noFailures(`${label} GET`, list.run), noFailures(`${label} GET by number`, byNumber.run)],
    }
  } finally {
    await stop(api.child)
    await cleanup(ctx.redis, prefix)
  }
}
