import type { FastifyBaseLogger } from 'fastify'

/** What an operator is told at most once a minute per kind: refusals, failures, limits reached. */
const INTERVAL_MS = 60_000

type Level = 'info' | 'warn' | 'error'

/**
 * Logs each kind of event at most once per interval, with how many more of
 * that kind were held back since the last line: an attack or a join storm
 * does not become a logging storm.
 */
export class ThrottledLog {
  private readonly kinds = new Map<string, { until: number, heldBack: number }>()

  constructor (
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = INTERVAL_MS
  ) {}

  /** Logs `message` at `level` unless a line of this `kind` went out within the interval. */
  write (level: Level, kind: string, details: Record<string, unknown>, message: string): void {
    const now = Date.now()
    const state = this.kinds.get(kind)
    if (state !== undefined && now < state.until) {
      state.heldBack++
      return
    }
    const heldBack = state?.heldBack ?? 0
    this.kinds.set(kind, { until: now + this.intervalMs, heldBack: 0 })
    const note = ` (logged at most once a minute${heldBack > 0 ? `; ${heldBack} more since the last line` : ''})`
    this.log[level](heldBack > 0 ? { ...details, heldBack } : details, message + note)
  }
}
