/** A ping frame with no payload; constant, so keep-alive allocates nothing. */
export const PING_FRAME = Buffer.from([0x89, 0x00])

/** A connection's keep-alive state: what its socket had read at the last tick, and the ticks since it read anything. */
export interface Liveness {
  bytesReadAtTick: number
  missedTicks: number
}

/**
 * One keep-alive tick of a connection whose socket has read `bytesRead`
 * bytes in all: false once it has gone `maxMissed` ticks in a row without
 * reading anything (the caller closes it); true otherwise, and the caller
 * pings it.
 */
export function stillAlive (state: Liveness, bytesRead: number, maxMissed: number): boolean {
  if (bytesRead !== state.bytesReadAtTick) {
    state.bytesReadAtTick = bytesRead
    state.missedTicks = 0
  } else if (state.missedTicks >= maxMissed) {
    return false
  }
  state.missedTicks++
  return true
}

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
