/**
 * Server-to-client WebSocket frames (RFC 6455 §5.2), encoded once per message
 * and written as-is to every recipient. Server frames are never masked, so a
 * frame is a 2-, 4- or 10-byte header followed by the payload.
 *
 * A "wire frame" in this project is one Buffer holding header and payload; its
 * first byte tells text from binary and its length field where the payload starts.
 */
const FIN_TEXT = 0x81
const FIN_BINARY = 0x82
const OPCODE_BINARY = 0x2

function headerLength (payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10
}

/** Bytes of the wire frame for a payload of `payloadLength` bytes. */
export function wireLength (payloadLength: number): number {
  return headerLength(payloadLength) + payloadLength
}

/** Encodes one unfragmented data frame into `target` at `offset`; returns the bytes written. */
export function encodeFrameInto (target: Buffer, offset: number, payload: Uint8Array, isBinary: boolean): number {
  const length = payload.length
  const header = headerLength(length)
  target[offset] = isBinary ? FIN_BINARY : FIN_TEXT
  if (header === 2) {
    target[offset + 1] = length
  } else if (header === 4) {
    target[offset + 1] = 126
    target.writeUInt16BE(length, offset + 2)
  } else {
    target[offset + 1] = 127
    target.writeUInt32BE(Math.floor(length / 0x100000000), offset + 2)
    target.writeUInt32BE(length >>> 0, offset + 6)
  }
  target.set(payload, offset + header)
  return header + length
}

/** Encodes one unfragmented data frame into a new Buffer. */
export function encodeFrame (payload: Uint8Array, isBinary: boolean): Buffer {
  const wire = Buffer.allocUnsafe(wireLength(payload.length))
  encodeFrameInto(wire, 0, payload, isBinary)
  return wire
}

/** Whether a wire frame carries binary data (opcode 2) rather than text. */
export function isBinaryFrame (wire: Buffer): boolean {
  return (wire[0] & 0x0f) === OPCODE_BINARY
}

/** The payload of a wire frame, without copying. */
export function framePayload (wire: Buffer): Buffer {
  const marker = wire[1] & 0x7f
  return wire.subarray(marker < 126 ? 2 : marker === 126 ? 4 : 10)
}
