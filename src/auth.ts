import { timingSafeEqual } from 'node:crypto'
import { computeAuth } from './protocol/siphash.js'

const ZERO = '0000000000000000'
// What Rust's u64::from_str_radix(_, 16) accepts: an optional '+', then hex digits
// that fit in 64 bits (leading zeros do not count).
const HEX_U64 = /^\+?0*([0-9a-fA-F]{1,16})$/
const ALL_ZEROS = /^\+?0+$/

/** The `auth` string as 16 lowercase hex digits; anything unparsable counts as 0 (ref). */
export function normalizeAuth (auth: string): string {
  if (ALL_ZEROS.test(auth)) return ZERO
  const match = HEX_U64.exec(auth)
  if (match === null) return ZERO
  return match[1].toLowerCase().padStart(16, '0')
}

/**
 * SPEC §3: with a server key, `auth` is required and must equal
 * SipHash(uid ‖ channel ‖ key); without one it is optional, and when present
 * must equal SipHash(uid ‖ channel). Compared in constant time.
 */
export function verifyAuth (uid: string, channel: string, auth: string | undefined, key: string | undefined): boolean {
  if (auth === undefined) return key === undefined
  const expected = Buffer.from(computeAuth(uid, channel, key), 'latin1')
  const given = Buffer.from(normalizeAuth(auth), 'latin1')
  return timingSafeEqual(expected, given)
}
