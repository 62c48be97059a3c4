import { encodeFrame, encodeFrameInto, wireLength } from '../protocol/frame.js'
import type { HistoryBudget } from './budget.js'

/** Chunks start small (quiet channels cost little) and grow with the history, up to this. */
const MIN_CHUNK_BYTES = 256
const MAX_CHUNK_BYTES = 64 * 1024

interface Chunk {
  bytes: Buffer
  /** Log offset of `bytes[0]`. */
  base: number
  /** Bytes written; the rest of `bytes` is free. */
  used: number
}

function roundUpToPowerOfTwo (value: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, value)))
}

/**
 * One channel's history (SPEC §5): the last `limit` frames, at most `maxBytes`
 * of them, oldest evicted first.
 *
 * Frames are encoded once, straight into an append-only log of chunks, and the
 * wire bytes handed out for fan-out are views of that log. A chunk's written
 * bytes never change, so those views stay valid while sockets still hold them,
 * with no copy; a chunk is let go once every frame in it is evicted. Each frame
 * costs its bytes plus 12 bytes of bookkeeping — no object per frame — and a
 * replay is one write per chunk instead of one per frame.
 */
export class HistoryRing {
  private chunks: Chunk[] = []
  /** Log offsets and lengths of the frames, in a circular index that grows up to `limit`. */
  private starts = new Float64Array(0)
  private lengths = new Uint32Array(0)
  /** Each frame's sender, where known (the v1 bridge needs it to replay a frame as a v1 `Msg`). */
  private senders: Array<string | null> = []
  /** 1 for a join frame, 0 for a data frame. */
  private joins = new Uint8Array(0)
  private first = 0
  private count = 0
  private totalBytes = 0
  private nextBase = 0
  /** Whether the last `append` kept its frame (false when the history keeps none or the frame alone is over `maxBytes`). */
  lastAppendKept = false

  constructor (
    private readonly limit: number,
    private readonly maxBytes: number,
    /** The bound over all channels (`historyTotalBytes`) this ring counts against; null for a scratch ring. */
    private readonly budget: HistoryBudget | null = null
  ) {}

  /** Number of frames held. */
  get size (): number { return this.count }

  /** Bytes held: wire frames, headers included. */
  get bytes (): number { return this.totalBytes }

  /**
   * Encodes a frame, stores it (evicting the oldest to stay within both
   * bounds) and returns its wire bytes, which never change afterwards. A frame
   * larger than `maxBytes` alone, or one the budget has no room for, is
   * encoded but not kept.
   */
  append (payload: Uint8Array, isBinary: boolean, sender: string | null = null, join = false): Buffer {
    const length = wireLength(payload.length)
    if (this.limit === 0 || length > this.maxBytes) {
      this.lastAppendKept = false
      return encodeFrame(payload, isBinary)
    }
    while (this.count > 0 && (this.count === this.limit || this.totalBytes + length > this.maxBytes)) {
      this.evictOldest()
    }
    if (this.budget !== null && !this.budget.admits(length, this)) {
      this.lastAppendKept = false
      return encodeFrame(payload, isBinary)
    }
    this.lastAppendKept = true
    const chunk = this.chunkWithRoom(length)
    const offset = chunk.used
    encodeFrameInto(chunk.bytes, offset, payload, isBinary)
    chunk.used += length
    if (this.count === this.starts.length) this.growIndex()
    const slot = (this.first + this.count) % this.starts.length
    this.starts[slot] = chunk.base + offset
    this.lengths[slot] = length
    this.senders[slot] = sender
    this.joins[slot] = join ? 1 : 0
    this.count++
    this.totalBytes += length
    if (this.budget !== null) this.budget.held += length
    return chunk.bytes.subarray(offset, offset + length)
  }

  /** The `index`-th frame's wire bytes, 0 being the oldest. */
  at (index: number): Buffer {
    const slot = (this.first + index) % this.starts.length
    const start = this.starts[slot]
    let chunk = this.chunks[0]
    for (let i = 1; i < this.chunks.length && this.chunks[i].base <= start; i++) chunk = this.chunks[i]
    const offset = start - chunk.base
    return chunk.bytes.subarray(offset, offset + this.lengths[slot])
  }

  /** The sender's uid of the `index`-th frame, 0 being the oldest; null when not known. */
  senderAt (index: number): string | null {
    return this.senders[(this.first + index) % this.starts.length]
  }

  /** Whether the `index`-th frame is a join frame (as far as it was told). */
  isJoinAt (index: number): boolean {
    return this.joins[(this.first + index) % this.starts.length] === 1
  }

  /** Calls `write` with every stored frame, oldest first, as a few contiguous runs of wire bytes. */
  forEachRun (write: (wire: Buffer) => void): void {
    if (this.count === 0) return
    const chunks = this.chunks
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]
      const from = i === 0 ? this.starts[this.first] - chunk.base : 0
      if (chunk.used > from) write(chunk.bytes.subarray(from, chunk.used))
    }
  }

  private chunkWithRoom (length: number): Chunk {
    const last = this.chunks[this.chunks.length - 1]
    if (last !== undefined && last.bytes.length - last.used >= length) return last
    const size = Math.max(length, Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, roundUpToPowerOfTwo(this.totalBytes + length))))
    if (last !== undefined) this.nextBase = last.base + last.bytes.length
    // allocUnsafeSlow: a small chunk must not pin a shared 8 KiB pool slab.
    const chunk: Chunk = { bytes: Buffer.allocUnsafeSlow(size), base: this.nextBase, used: 0 }
    this.chunks.push(chunk)
    return chunk
  }

  /** Evicts the oldest frames until at most `bytes` are held; returns how many went. */
  trimTo (bytes: number): number {
    let evicted = 0
    while (this.count > 0 && this.totalBytes > bytes) {
      this.evictOldest()
      evicted++
    }
    return evicted
  }

  private evictOldest (): void {
    const length = this.lengths[this.first]
    this.totalBytes -= length
    if (this.budget !== null) this.budget.held -= length
    this.senders[this.first] = null
    this.first = (this.first + 1) % this.starts.length
    this.count--
    if (this.count === 0) {
      const last = this.chunks[this.chunks.length - 1]
      this.nextBase = last.base + last.bytes.length
      this.chunks = []
      this.first = 0
      return
    }
    const oldest = this.starts[this.first]
    while (this.chunks.length > 1 && this.chunks[1].base <= oldest) this.chunks.shift()
  }

  private growIndex (): void {
    const capacity = Math.min(this.limit, Math.max(8, this.starts.length * 2))
    const starts = new Float64Array(capacity)
    const lengths = new Uint32Array(capacity)
    const senders = new Array<string | null>(capacity).fill(null)
    const joins = new Uint8Array(capacity)
    for (let i = 0; i < this.count; i++) {
      const slot = (this.first + i) % this.starts.length
      starts[i] = this.starts[slot]
      lengths[i] = this.lengths[slot]
      senders[i] = this.senders[slot]
      joins[i] = this.joins[slot]
    }
    this.starts = starts
    this.lengths = lengths
    this.senders = senders
    this.joins = joins
    this.first = 0
  }
}
