/**
 * One channel's history (SPEC §5): the last `limit` wire frames, at most
 * `maxBytes` of them, oldest evicted first. A circular buffer that grows on
 * demand up to `limit`, so a quiet channel costs a few slots, not `limit`.
 */
export class HistoryRing {
  private slots: Array<Buffer | undefined> = []
  private start = 0
  private count = 0
  private totalBytes = 0

  constructor (
    private readonly limit: number,
    private readonly maxBytes: number
  ) {}

  /** Number of frames held. */
  get size (): number { return this.count }

  /** Bytes held (wire frames, headers included). */
  get bytes (): number { return this.totalBytes }

  /** The `index`-th frame, 0 being the oldest. */
  at (index: number): Buffer {
    return this.slots[(this.start + index) % this.slots.length] as Buffer
  }

  /** Appends a frame, evicting the oldest to stay within both bounds. A frame larger than `maxBytes` alone is not kept. */
  push (wire: Buffer): void {
    if (this.limit === 0 || wire.length > this.maxBytes) return
    while (this.count > 0 && (this.count === this.limit || this.totalBytes + wire.length > this.maxBytes)) {
      this.evictOldest()
    }
    if (this.count === this.slots.length) this.grow()
    this.slots[(this.start + this.count) % this.slots.length] = wire
    this.count++
    this.totalBytes += wire.length
  }

  private evictOldest (): void {
    const wire = this.slots[this.start] as Buffer
    this.slots[this.start] = undefined
    this.start = (this.start + 1) % this.slots.length
    this.count--
    this.totalBytes -= wire.length
  }

  private grow (): void {
    const capacity = Math.min(this.limit, Math.max(8, this.slots.length * 2))
    const slots = new Array<Buffer | undefined>(capacity)
    for (let i = 0; i < this.count; i++) slots[i] = this.at(i)
    this.slots = slots
    this.start = 0
  }
}
