/**
 * One frame as it travels between nodes: the value of a channel stream's
 * entry in Redis and the body of its pub/sub notice. Binary, so payloads go
 * through untouched:
 *
 *   flags (1) · origin length (1) · origin · publisher's local sequence (8, double BE)
 *   · uid length (2, BE) · uid · payload
 *
 * flags: bit 0 binary frame, bit 1 join frame, bit 2 has a uid (a server-side
 * publish has none), bit 3 restored (written back from a node's memory after
 * Redis lost it: history for nodes that read the channel anew, nothing new
 * for those that hold it).
 */
const BINARY = 1
const JOIN = 2
const HAS_UID = 4
const RESTORED = 8

export interface ClusterEntry {
  /** The node that published it. */
  origin: string
  /** The publishing node's sequence number for it (0 for join frames): how that node matches the echo to its own fan-out. */
  sequence: number
  uid: string | null
  join: boolean
  isBinary: boolean
  restored: boolean
  payload: Buffer
}

export function encodeEntry (origin: Buffer, sequence: number, uid: string | null, join: boolean, isBinary: boolean, payload: Uint8Array, restored = false): Buffer {
  const uidLength = uid === null ? 0 : Buffer.byteLength(uid)
  const headerLength = 1 + 1 + origin.length + 8 + 2 + uidLength
  const entry = Buffer.allocUnsafe(headerLength + payload.length)
  entry[0] = (isBinary ? BINARY : 0) | (join ? JOIN : 0) | (uid === null ? 0 : HAS_UID) | (restored ? RESTORED : 0)
  entry[1] = origin.length
  origin.copy(entry, 2)
  let offset = 2 + origin.length
  entry.writeDoubleBE(sequence, offset)
  offset += 8
  entry.writeUInt16BE(uidLength, offset)
  offset += 2
  if (uid !== null) offset += entry.write(uid, offset, 'utf8')
  entry.set(payload, offset)
  return entry
}

/** Decodes an entry; null when it is not one of ours (a foreign writer on our keys). */
export function decodeEntry (entry: Buffer): ClusterEntry | null {
  if (entry.length < 12) return null
  const flags = entry[0]
  const originLength = entry[1]
  let offset = 2 + originLength
  if (entry.length < offset + 10) return null
  const origin = entry.toString('latin1', 2, offset)
  const sequence = entry.readDoubleBE(offset)
  offset += 8
  const uidLength = entry.readUInt16BE(offset)
  offset += 2
  if (entry.length < offset + uidLength) return null
  const uid = (flags & HAS_UID) !== 0 ? entry.toString('utf8', offset, offset + uidLength) : null
  offset += uidLength
  return {
    origin,
    sequence,
    uid,
    join: (flags & JOIN) !== 0,
    isBinary: (flags & BINARY) !== 0,
    restored: (flags & RESTORED) !== 0,
    payload: entry.subarray(offset)
  }
}

/** A Redis stream id `ms-seq`, as two numbers so ids compare without string work. */
export class StreamId {
  constructor (readonly ms: number, readonly seq: number) {}

  static readonly ZERO = new StreamId(0, 0)

  /** Parses `ms-seq` from `text[start, end)`; null if malformed. */
  static parse (text: string): StreamId | null {
    const dash = text.indexOf('-')
    if (dash <= 0) return null
    const ms = Number(text.slice(0, dash))
    const seq = Number(text.slice(dash + 1))
    if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(seq) || ms < 0 || seq < 0) return null
    return new StreamId(ms, seq)
  }

  isAfter (other: StreamId): boolean {
    return this.ms > other.ms || (this.ms === other.ms && this.seq > other.seq)
  }

  toString (): string {
    return `${this.ms}-${this.seq}`
  }
}

const SPACE = 0x20

/**
 * Reads stream entries packed by the bus's scripts (PACK_ENTRIES in
 * redis-bus.ts): `id SP length SP value`, repeated. Calls `each` with every
 * entry's id and value (a view into `packed`); stops at the first malformed
 * part (nothing of ours writes one).
 */
export function parseStreamPack (packed: Buffer, each: (id: StreamId, value: Buffer) => void): void {
  let offset = 0
  while (offset < packed.length) {
    const idEnd = packed.indexOf(SPACE, offset)
    if (idEnd === -1) return
    const id = StreamId.parse(packed.toString('latin1', offset, idEnd))
    let length = 0
    let at = idEnd + 1
    while (at < packed.length && packed[at] !== SPACE) {
      const digit = packed[at] - 0x30
      if (digit < 0 || digit > 9) return
      length = length * 10 + digit
      at++
    }
    const start = at + 1
    if (id === null || at === idEnd + 1 || start + length > packed.length) return
    each(id, packed.subarray(start, start + length))
    offset = start + length
  }
}
