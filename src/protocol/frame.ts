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

/** Encodes one unfragmented data frame. */
export function encodeFrame (payload: Uint8Array, isBinary: boolean): Buffer {
  const length = payload.length
  const offset = headerLength(length)
  const wire = Buffer.allocUnsafe(offset + length)
  wire[0] = isBinary ? FIN_BINARY : FIN_TEXT
  if (offset === 2) {
    wire[1] = length
  } else if (offset === 4) {
    wire[1] = 126
    wire.writeUInt16BE(length, 2)
  } else {
    wire[1] = 127
    wire.writeUInt32BE(Math.floor(length / 0x100000000), 2)
    wire.writeUInt32BE(length >>> 0, 6)
  }
  wire.set(payload, offset)
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
