import { sipHash24Hex } from '../protocol/siphash.js'

const encoder = new TextEncoder()

/** The dedup hash of a frame (SPEC §6): SipHash-2-4, zero key, over its bytes (text as UTF-8). */
export function frameHash (data: string | Uint8Array): string {
  return sipHash24Hex(typeof data === 'string' ? encoder.encode(data) : data)
}

/**
 * The last `capacity` frame hashes seen, first in first out (SPEC §6; the
 * reference client keeps 40,000). A frame whose hash is still here is a duplicate.
 */
export class FrameDeduplicator {
  private readonly hashes = new Set<string>()
  private readonly order: string[] = []
  private next = 0

  constructor (readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('dedup capacity must be a positive integer')
  }

  /** Records `hash`; returns false when it was already there (a duplicate). */
  add (hash: string): boolean {
    if (this.hashes.has(hash)) return false
    if (this.order.length < this.capacity) {
      this.order.push(hash)
    } else {
      this.hashes.delete(this.order[this.next])
      this.order[this.next] = hash
      this.next = (this.next + 1) % this.capacity
    }
    this.hashes.add(hash)
    return true
  }

  has (hash: string): boolean {
    return this.hashes.has(hash)
  }

  get size (): number {
    return this.hashes.size
  }
}
