import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** One line of the table: a figure, its latencies if any, and how it compares with a ceiling of this run. */
export interface Row {
  scenario: string
  figure: number
  unit: string
  p50Ms?: number
  p99Ms?: number
  /** What the figure is divided by: a ceiling measured in this run, or (said so) a computed limit. */
  ceiling?: { name: string; value: number }
  target?: { text: string; met: boolean }
  /** Correctness checks of the run that produced the figure; empty = none apply. */
  checks: Check[]
  notes?: string
}

export interface Check {
  name: string
  ok: boolean
  detail: string
}

export const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail })

/** `a == b` as a check, with both numbers in its detail. */
export const equal = (name: string, actual: number, expected: number): Check => check(name, actual === expected, `${name}: ${actual} (expected ${expected})`)

const started = Date.now()

/** Progress goes to stderr so that stdout holds only the table. */
export function progress(message: string): void {
  process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`)
}

export const elapsedSeconds = (): number => (Date.now() - started) / 1000

const fmt = (n: number): string => (Number.isNaN(n) ? '–' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n >= 10 ? n.toFixed(1) : n.toFixed(2))

const ratioOf = (row: Row): number | undefined => (row.ceiling && row.ceiling.value > 0 ? row.figure / row.ceiling.value : undefined)

export function markdownTable(rows: Row[]): string {
  const lines = ['| scenario | figure | p50 ms | p99 ms | ceiling (same run) | ratio | target | checks |', '|---|---:|---:|---:|---|---:|---|---|']
  for (const row of rows) {
    const ratio = ratioOf(row)
    const failed = row.checks.filter((c) => !c.ok)
    const checks = row.checks.length === 0 ? '–' : failed.length === 0 ? 'ok' : `**FAIL** ${failed.map((c) => c.detail).join('; ')}`
    lines.push(
      `| ${row.scenario}${row.notes ? ` <br><sub>${row.notes}</sub>` : ''} | ${fmt(row.figure)} ${row.unit} | ${row.p50Ms !== undefined ? fmt(row.p50Ms) : ''} | ${
        row.p99Ms !== undefined ? fmt(row.p99Ms) : ''
      } | ${row.ceiling ? `${row.ceiling.name}: ${fmt(row.ceiling.value)}` : ''} | ${ratio !== undefined ? `${(ratio * 100).toFixed(0)}%` : ''} | ${
        row.target ? `${row.target.met ? 'met' : '**missed**'}: ${row.target.text}` : ''
      } | ${checks} |`,
    )
  }
  return lines.join('\n')
}

/** Writes `bench/results/<timestamp>.json` and `bench/results/latest.json`; returns the first path. */
export function writeResults(dir: string, rows: Row[], meta: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true })
  const body = JSON.stringify({ ...meta, rows: rows.map((row) => ({ ...row, ratio: ratioOf(row) })) }, null, 2)
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${body}\n`)
  writeFileSync(join(dir, 'latest.json'), `${body}\n`)
  return file
}
