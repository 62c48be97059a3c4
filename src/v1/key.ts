import { isIPv4, isIPv6 } from 'node:net'
import SipHash from 'siphash'

const ZERO_KEY = new Uint32Array(4)

/**
 * The v1 SipHash key (SPEC-v1 §5): SipHash-2-4 with a zero key over each
 * string's UTF-8 bytes followed by one 0xFF byte, as Rust's `Hash for str`
 * feeds them; 16 lowercase hex digits, the order they take on the wire.
 */
export function v1Key (strings: readonly string[]): string {
  const parts: Buffer[] = []
  for (const text of strings) parts.push(Buffer.from(text, 'utf8'), Buffer.from([0xff]))
  return SipHash.hash_hex(ZERO_KEY, Buffer.concat(parts))
}

/** The CID that goes with a key: its lowest 32 bits. */
export function cidOfKey (key: string): number {
  return Number.parseInt(key.slice(8), 16) >>> 0
}

/**
 * An endpoint as the reference's `addr2str` writes it: `a.b.c.d:port`, or
 * `[h:h:h:h:h:h:h:h]:port` with all eight groups in lowercase hex without
 * leading zeros. IPv4-mapped IPv6 addresses come out in their IPv4 form (the
 * client hashes that), unless `keepMapped`.
 */
export function addressString (address: string, port: number, keepMapped = false): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped !== null && !keepMapped) return `${mapped[1]}:${port}`
  if (isIPv4(address)) return `${address}:${port}`
  if (!isIPv6(address)) throw new TypeError(`not an IP address: ${address}`)
  return `[${expandIPv6(address).join(':')}]:${port}`
}

/** The eight 16-bit groups of an IPv6 address, in hex without leading zeros. */
function expandIPv6 (address: string): string[] {
  let text = address.replace(/%.*$/, '').toLowerCase()
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted[1].split('.').map(Number)
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null]
  const left = head === '' ? [] : head.split(':')
  const right = tail === null || tail === '' ? [] : tail.split(':')
  const middle = tail === null ? [] : Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...middle, ...right].map((group) => Number.parseInt(group, 16).toString(16))
}

/** How v1 keys are made and checked (SPEC-v1 §5): a shared key, or the client's address. */
export interface V1KeyMode {
  /** `MLES_KEY`: with it, keys hash `[key, uid, channel]`. */
  sharedKey?: string
  /** `MLES_ADDR_KEY`: in address mode, hashed after the address. */
  addressKey?: string
}

/** The strings hashed for a key, in order. `address` is the client's endpoint as `addressString` writes it. */
export function keyStrings (mode: V1KeyMode, address: string, uid: string, channel: string): string[] {
  if (mode.sharedKey !== undefined && mode.sharedKey !== '') return [mode.sharedKey, uid, channel]
  if (mode.addressKey !== undefined && mode.addressKey !== '') return [address, mode.addressKey, uid, channel]
  return [address, uid, channel]
}
