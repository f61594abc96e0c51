/** Timers that can all be cancelled at once, so that closing the simulator leaves nothing running. */
export class Timers {
  readonly #pending = new Set<NodeJS.Timeout>()

  later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#pending.delete(timer)
      fn()
    }, ms)
    this.#pending.add(timer)
  }

  clear(): void {
    for (const timer of this.#pending) clearTimeout(timer)
    this.#pending.clear()
  }
}
