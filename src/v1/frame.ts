/**
 * Mles v1 framing (SPEC-v1 §2): a 16-byte prefix — type 'M', 24-bit payload
 * length, 32-bit CID, 64-bit SipHash key, all big-endian — then the CBOR
 * payload. Frames are concatenated on a TCP stream with nothing between them.
 */
export const V1_TYPE = 0x4d
export const V1_PREFIX_BYTES = 16
/** The largest payload a 24-bit length can say. */
export const V1_MAX_PAYLOAD_BYTES = 0xffffff

/** Why a v1 stream was cut: the connection is closed, as the reference does (it has no error frames). */
export type V1FrameError = 'bad type' | 'zero length' | 'over limit'

/** A frame's prefix fields. `key` is the 8 key bytes as 16 lowercase hex digits. */
export interface V1Prefix {
  length: number
  cid: number
  key: string
}

export function readPrefix (frame: Uint8Array): V1Prefix {
  const view = Buffer.from(frame.buffer, frame.byteOffset, V1_PREFIX_BYTES)
  return {
    length: view.readUInt32BE(0) & 0xffffff,
    cid: view.readUInt32BE(4),
    key: view.toString('hex', 8, 16)
  }
}

/** A whole frame: the prefix for `payload` with `cid` and `key` (16 hex digits), then the payload. */
export function encodeFrame (payload: Uint8Array, cid: number, key: string): Buffer {
  if (payload.length === 0 || payload.length > V1_MAX_PAYLOAD_BYTES) throw new RangeError(`v1 payload of ${payload.length} bytes: must be 1 to ${V1_MAX_PAYLOAD_BYTES}`)
  const frame = Buffer.allocUnsafe(V1_PREFIX_BYTES + payload.length)
  frame.writeUInt32BE(((V1_TYPE << 24) | payload.length) >>> 0, 0)
  frame.writeUInt32BE(cid >>> 0, 4)
  frame.write(key, 8, 8, 'hex')
  frame.set(payload, V1_PREFIX_BYTES)
  return frame
}

/** A copy of `frame` with another CID and key (a peer link re-keys frames in address mode). */
export function rekeyFrame (frame: Uint8Array, cid: number, key: string): Buffer {
  const copy = Buffer.from(frame)
  copy.writeUInt32BE(cid >>> 0, 4)
  copy.write(key, 8, 8, 'hex')
  return copy
}

/**
 * Cuts a TCP byte stream into frames. Bytes are kept only until a frame is
 * whole; a frame's payload is never buffered past `maxPayloadBytes`, which is
 * checked as soon as the prefix is in.
 */
export class V1FrameReader {
  private chunks: Buffer[] = []
  private buffered = 0
  /** Payload length of the frame being read, once its prefix is in; -1 before. */
  private expected = -1

  constructor (private readonly maxPayloadBytes: number = V1_MAX_PAYLOAD_BYTES) {}

  /** Bytes held for an incomplete frame. */
  get pendingBytes (): number {
    return this.buffered
  }

  /**
   * Adds `chunk` and returns the frames it completes (each a fresh Buffer,
   * prefix included), or the reason the stream must be cut.
   */
  push (chunk: Buffer): Buffer[] | V1FrameError {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    const frames: Buffer[] = []
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < V1_PREFIX_BYTES) return frames
        const prefix = this.peek(V1_PREFIX_BYTES)
        if (prefix[0] !== V1_TYPE) return 'bad type'
        const length = prefix.readUInt32BE(0) & 0xffffff
        if (length === 0) return 'zero length'
        if (length > this.maxPayloadBytes) return 'over limit'
        this.expected = length
      }
      const total = V1_PREFIX_BYTES + this.expected
      if (this.buffered < total) return frames
      frames.push(this.take(total))
      this.expected = -1
    }
  }

  /** The first `count` buffered bytes, joined if they span chunks (not consumed). */
  private peek (count: number): Buffer {
    if (this.chunks[0].length < count) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0]
  }

  private take (count: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    // A copy when the frame is part of a larger chunk: the frame may be kept in history.
    const frame = joined.length === count ? joined : Buffer.from(joined.subarray(0, count))
    const rest = joined.subarray(count)
    this.chunks = rest.length === 0 ? [] : [rest]
    this.buffered = rest.length
    return frame
  }
}
