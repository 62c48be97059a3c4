/** Who makes room when the history of all channels together is full: the hub, which knows the channels. */
export interface HistoryReclaimer {
  /** Evicts history elsewhere (or from `asking` itself) so that `needed` more bytes may fit. */
  reclaim: (needed: number, asking: object) => void
  /** A frame of `needed` bytes was not kept: no room could be made for it. */
  notKept: (needed: number) => void
}

/**
 * The bytes of history held over all channels, against the bound of option
 * `historyTotalBytes` (Infinity when off). Every budgeted ring adds what it
 * stores and takes off what it evicts; a frame that would pass the bound
 * first asks the reclaimer for room.
 */
export class HistoryBudget {
  /** Wire bytes held by every budgeted ring together. */
  held = 0

  constructor (
    readonly limit: number,
    private readonly reclaimer: HistoryReclaimer
  ) {}

  /** Whether `length` more bytes may be stored for `asking`, once room has been made if they do not fit now. */
  admits (length: number, asking: object): boolean {
    if (this.held + length <= this.limit) return true
    this.reclaimer.reclaim(length, asking)
    if (this.held + length <= this.limit) return true
    this.reclaimer.notKept(length)
    return false
  }
}
