import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The processes a benchmark runs: each one `node --import tsx <entry>` with its own environment and
 * its output in a log file. Every child is remembered so that the run can kill them all, even on error.
 */

export const ROOT = fileURLToPath(new URL('../', import.meta.url))

export interface Child {
  name: string
  pid: number
  proc: ChildProcess
  log: string
  /** `performance.now()` at spawn: where a CPU profile's clock starts, roughly. */
  startedAt: number
}

const running = new Set<Child>()

export interface StartOptions {
  /** Directory for the log file (and the CPU profile when `profileDir` is set). */
  logDir: string
  /** Write a `--cpu-prof` profile there when the process exits. */
  profileDir?: string | undefined
  /** Where the entry point is taken from: another build of the service (a git worktree), or this one. */
  cwd?: string | undefined
}

export function start(name: string, entry: string, env: Record<string, string>, options: StartOptions): Child {
  // Files are named after the scenario's KEY_PREFIX too: several scenarios have an `api`.
  const file = env.KEY_PREFIX ? `${env.KEY_PREFIX}.${name}` : name
  const log = join(options.logDir, `${file}.log`)
  const fd = openSync(log, 'a')
  // One directory per process: tsx's loader thread writes a profile of its own next to the main one.
  const profile = options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${ensureDir(join(options.profileDir, file))}`] : []
  const proc = spawn(process.execPath, [...profile, '--import', 'tsx', entry], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
  })
  closeSync(fd)
  if (proc.pid === undefined) throw new Error(`could not start ${name}`)
  const child = { name, pid: proc.pid, proc, log, startedAt: performance.now() }
  running.add(child)
  proc.once('exit', () => running.delete(child))
  return child
}

const ensureDir = (dir: string): string => {
  mkdirSync(dir, { recursive: true })
  return dir
}

const alive = (child: Child): boolean => child.proc.exitCode === null && child.proc.signalCode === null

/** SIGTERM (the entry points close gracefully and write their CPU profile), SIGKILL after `graceMs`. */
export async function stop(child: Child, graceMs = 10_000): Promise<void> {
  if (!alive(child)) return
  const exited = once(child.proc, 'exit')
  child.proc.kill('SIGTERM')
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((child) => stop(child)))
}

/** Last resort on exit: whatever still runs is killed at once. */
export function killAllNow(): void {
  for (const child of running) if (alive(child)) child.proc.kill('SIGKILL')
}

function tail(child: Child, lines = 15): string {
  if (!existsSync(child.log)) return ''
  return readFileSync(child.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
}

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** Polls `check` every `everyMs` until it returns true; throws after `timeoutMs` naming `what`. */
export async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Waits until `url` answers 200; fails early, with the end of its log, if the process dies. */
export async function httpReady(child: Child, url: string, timeoutMs = 20_000): Promise<void> {
  await until(
    async () => {
      if (!alive(child)) throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}):\n${tail(child)}`)
      try {
        return (await fetch(url)).ok
      } catch {
        return false
      }
    },
    `${child.name} at ${url}`,
    timeoutMs,
    100,
  )
}

export function assertAlive(child: Child): void {
  if (!alive(child)) throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}):\n${tail(child)}`)
}

/** Resident memory from /proc: now, and the peak since the process started (VmHWM), in MB. */
export function rss(child: Child): { nowMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0)
  return { nowMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 }
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(child: Child): number {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticksPerSecond = 100
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond
}

/** CPU seconds the whole machine has been busy (all cores, from /proc/stat). */
function machineBusySeconds(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = ticks
  return (user + nice + system + irq + softirq + steal) / 100
}

export interface CpuUse {
  seconds: number
  /** CPU seconds used by each child over the stretch. */
  byChild: Record<string, number>
  /** The benchmark process itself: the load generator. */
  bench: number
  /** Everything else on the machine, Redis included (it is not our child). */
  others: number
}

/** Measures CPU use from now until the returned function is called. */
export function cpuMeter(children: Child[]): () => CpuUse {
  const t0 = Date.now()
  const before = children.map((c) => cpuSeconds(c))
  const bench0 = process.cpuUsage()
  const machine0 = machineBusySeconds()
  return () => {
    const byChild: Record<string, number> = {}
    children.forEach((c, i) => (byChild[c.name] = alive(c) ? cpuSeconds(c) - before[i]! : 0))
    const { user, system } = process.cpuUsage(bench0)
    const bench = (user + system) / 1e6
    const ours = Object.values(byChild).reduce((a, b) => a + b, bench)
    return { seconds: (Date.now() - t0) / 1000, byChild, bench, others: Math.max(0, machineBusySeconds() - machine0 - ours) }
  }
}

/** `api 95%, load generator 80%, redis 40%, other processes 30%`, each as % of one core. */
export function describeCpu(use: CpuUse, redisSeconds: number): string {
  const pct = (s: number) => `${Math.round((s / use.seconds) * 100)}%`
  return [
    ...Object.entries(use.byChild).map(([name, s]) => `${name} ${pct(s)}`),
    `load generator ${pct(use.bench)}`,
    `redis ${pct(redisSeconds)}`,
    `other processes ${pct(Math.max(0, use.others - redisSeconds))}`,
  ].join(', ')
}
