/** What keep-alive needs of a connection. */
export interface KeepAliveTarget {
  /**
   * Called once per interval: the target pings, or closes itself once it has
   * gone `maxMissed` intervals in a row without receiving anything.
   */
  keepAliveTick: (maxMissed: number) => void
}

/**
 * SPEC §7 with one timer for all connections: every `intervalMs` each target
 * is ticked. No per-connection timers, no per-frame bookkeeping: a target
 * tells liveness from its socket's byte counter (any frame or pong counts).
 */
export class KeepAlive {
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly targets: Iterable<KeepAliveTarget>,
    private readonly intervalMs: number,
    private readonly maxMissed: number
  ) {}

  start (): void {
    if (this.intervalMs === 0 || this.timer !== null) return
    this.timer = setInterval(this.tick, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  readonly tick = (): void => {
    for (const target of this.targets) target.keepAliveTick(this.maxMissed)
  }
}
