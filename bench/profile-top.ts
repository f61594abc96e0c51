import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from './processes.js'

/**
 * `npx tsx bench/profile-top.ts <file.cpuprofile | directory> [count] [--from <s>]`: the functions with the most self
 * time in a `--cpu-prof` profile (from `BENCH_PROFILE=1 npm run bench`, one directory per process), and
 * the packages or files they live in. Given a directory, it reads the largest profile in it: the main
 * thread's, not the loader thread's. `--from` skips the first seconds of the profile (start-up, warm-up):
 * the bench prints where each measured stretch starts when BENCH_PROFILE=1.
 */

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const args = process.argv.slice(2)
const fromAt = args.indexOf('--from')
const fromSeconds = fromAt >= 0 ? Number(args.splice(fromAt, 2)[1]) : 0
const [arg, countArg] = args
if (!arg) {
  console.error('usage: npx tsx bench/profile-top.ts <file.cpuprofile | directory> [count]')
  process.exit(1)
}
const file = statSync(arg).isDirectory()
  ? readdirSync(arg)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(arg, f))
      .sort((a, b) => statSync(b).size - statSync(a).size)[0]!
  : arg
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
let clock = 0
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0
  clock += delta
  if (clock >= fromSeconds * 1e6) self.set(id, (self.get(id) ?? 0) + delta)
})
const total = [...self.values()].reduce((a, b) => a + b, 0)

/** `node_modules/fastify/lib/x.js` → `fastify`; our files relative to the repository. */
function where(url: string): string {
  if (!url) return '(native)'
  const path = url.replace(/^file:\/\//, '')
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (pkg) return pkg[1]!
  return path.startsWith('node:') ? path : relative(ROOT, path)
}

const functions = new Map<string, number>()
const places = new Map<string, number>()
for (const [id, us] of self) {
  const { callFrame } = byId.get(id)!
  const name = `${callFrame.functionName || '(anonymous)'}  ${where(callFrame.url)}${callFrame.url ? `:${callFrame.lineNumber + 1}` : ''}`
  functions.set(name, (functions.get(name) ?? 0) + us)
  places.set(where(callFrame.url), (places.get(where(callFrame.url)) ?? 0) + us)
}

const top = (map: Map<string, number>, n: number) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => `${((us / total) * 100).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n')

const count = Number(countArg ?? 25)
console.log(
  `${file}: ${(total / 1e6).toFixed(1)} s sampled${fromSeconds ? ` from ${fromSeconds} s on` : ''}\n\nself time by function:\n${top(functions, count)}\n\nself time by package or file:\n${top(places, 15)}`,
)
