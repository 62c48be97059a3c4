import cbor from 'cbor'

/** The v1 message (SPEC-v1 §3). */
export interface V1Msg {
  uid: string
  channel: string
  message: Uint8Array
}

/** What the reference makes of a payload it cannot decode (SPEC-v1 §3, §6). */
const EMPTY_MSG: Readonly<V1Msg> = Object.freeze({ uid: '', channel: '', message: new Uint8Array(0) })

/** CBOR heads with shortest-form lengths. */
function head (major: number, length: number): Buffer {
  const type = major << 5
  if (length < 24) return Buffer.from([type | length])
  if (length < 0x100) return Buffer.from([type | 24, length])
  if (length < 0x10000) return Buffer.from([type | 25, length >> 8, length & 0xff])
  const bytes = Buffer.allocUnsafe(5)
  bytes[0] = type | 26
  bytes.writeUInt32BE(length, 1)
  return bytes
}

function text (value: string): Buffer[] {
  const bytes = Buffer.from(value, 'utf8')
  return [head(3, bytes.length), bytes]
}

function bytes (value: Uint8Array): Buffer[] {
  return [head(2, value.length), Buffer.from(value.buffer, value.byteOffset, value.length)]
}

/** `Msg` as serde_cbor writes it: map(3) of uid, channel (text) and message (bytes), in that order. */
export function encodeMsg (msg: V1Msg): Buffer {
  return Buffer.concat([Buffer.from([0xa3]), ...text('uid'), ...text(msg.uid), ...text('channel'), ...text(msg.channel), ...text('message'), ...bytes(msg.message)])
}

/** A `ResyncMsg` (SPEC-v1 §4) carrying whole frames. */
export function encodeResync (frames: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0xa1]), ...text('resync_message'), head(4, frames.length)]
  for (const frame of frames) parts.push(Buffer.from([0xa1]), ...text('encoded_msg'), ...bytes(frame))
  return Buffer.concat(parts)
}

function decodeCbor (payload: Uint8Array): unknown {
  try {
    // preferMap: keys such as "__proto__" stay data. One item, nothing after it.
    return cbor.decodeFirstSync(payload, { preferMap: true })
  } catch {
    return undefined
  }
}

/** A serde `String`: text, or bytes that are valid UTF-8. */
function asString (value: unknown): string | null {
  if (typeof value === 'string') return value
  if (value instanceof Uint8Array) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(value)
    } catch {
      return null
    }
  }
  return null
}

/** A serde_bytes `ByteBuf`: bytes, text (its UTF-8), or an array of 0–255 integers. */
function asBytes (value: unknown): Uint8Array | null {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  if (Array.isArray(value) && value.every((item) => Number.isInteger(item) && item >= 0 && item <= 255)) return Uint8Array.from(value as number[])
  return null
}

/**
 * Decodes a `Msg` leniently, as the reference's serde_cbor does: a map with
 * the three fields in any order and other keys ignored, or the packed
 * 3-element array. Anything else — wrong types, a missing field, trailing
 * bytes, truncated CBOR — gives the empty Msg, never an exception.
 */
export function decodeMsg (payload: Uint8Array): V1Msg {
  const value = decodeCbor(payload)
  let fields: [unknown, unknown, unknown]
  if (value instanceof Map) {
    if (!value.has('uid') || !value.has('channel') || !value.has('message')) return { ...EMPTY_MSG }
    fields = [value.get('uid'), value.get('channel'), value.get('message')]
  } else if (Array.isArray(value) && value.length === 3) {
    fields = [value[0], value[1], value[2]]
  } else {
    return { ...EMPTY_MSG }
  }
  const uid = asString(fields[0])
  const channel = asString(fields[1])
  const message = asBytes(fields[2])
  if (uid === null || channel === null || message === null) return { ...EMPTY_MSG }
  return { uid, channel, message }
}

/** The frames of a `ResyncMsg`, or null when `payload` is not one with at least one frame. */
export function decodeResync (payload: Uint8Array): Buffer[] | null {
  const value = decodeCbor(payload)
  if (!(value instanceof Map) || value.size !== 1) return null
  const list = value.get('resync_message')
  if (!Array.isArray(list) || list.length === 0) return null
  const frames: Buffer[] = []
  for (const item of list) {
    const encoded = item instanceof Map ? item.get('encoded_msg') : Array.isArray(item) && item.length === 1 ? item[0] : undefined
    const frame = asBytes(encoded)
    if (frame === null) return null
    frames.push(Buffer.from(frame))
  }
  return frames
}
