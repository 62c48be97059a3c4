/** What keep-alive needs of a connection. */
export interface KeepAliveTarget {
  /** Pings sent since the client was last heard from. Reset by any frame or pong. */
  missedPongs: number
  /** Sends a ping; skipped for connections that are not open. */
  ping: () => void
  /** Closes a connection that left too many pings unanswered. */
  expire: () => void
}

/**
 * SPEC §7 with one timer for all connections: every `intervalMs` each target
 * is pinged, and one that has left `maxMissed` pings unanswered is expired.
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
    for (const target of this.targets) {
      if (target.missedPongs >= this.maxMissed) {
        target.expire()
      } else {
        target.missedPongs++
        target.ping()
      }
    }
  }
}
