import SipHash from 'siphash'

// SPEC §3 and §6: every Mles hash is SipHash-2-4 with a 128-bit key of zero bytes.
const ZERO_KEY = new Uint32Array(4)
const encoder = new TextEncoder()

/** SipHash-2-4 of `message` under `key` (four little-endian 32-bit words; zero by default), as 16 lowercase hex digits. */
export function sipHash24Hex (message: Uint8Array | string, key: Uint32Array = ZERO_KEY): string {
  return SipHash.hash_hex(key, typeof message === 'string' ? encoder.encode(message) : message)
}

/**
 * The `auth` value of a join frame (SPEC §3): SipHash-2-4 with a zero key over
 * `uid ‖ channel ‖ key`, as 16 lowercase hex digits. Without a key the hash
 * covers `uid ‖ channel` only.
 */
export function computeAuth (uid: string, channel: string, key?: string): string {
  return sipHash24Hex(uid + channel + (key ?? ''))
}
