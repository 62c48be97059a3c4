import ipaddr from 'ipaddr.js'

interface IpWindow {
  count: number
  resetAt: number
}

/**
 * Per-source-IP upgrade limit: at most `limit` attempts per `windowMs`, the
 * window starting at an address's first attempt. Memory is one small entry
 * per address seen in the current window; `sweep` drops the expired ones.
 */
export class PerIpLimiter {
  private readonly windows = new Map<string, IpWindow>()

  constructor (
    private readonly limit: number,
    private readonly windowMs: number
  ) {}

  /**
   * Counts an attempt from `ip`. Returns 0 when it is allowed, otherwise how
   * many attempts over the limit it is in the current window (1 for the first
   * refused one).
   */
  take (ip: string, now: number): number {
    if (this.limit === 0) return 0
    let window = this.windows.get(ip)
    if (window === undefined || now >= window.resetAt) {
      window = { count: 0, resetAt: now + this.windowMs }
      this.windows.set(ip, window)
    }
    window.count++
    return window.count <= this.limit ? 0 : window.count - this.limit
  }

  /** Milliseconds until the window of `ip` ends (0 when it has none). */
  retryAfterMs (ip: string, now: number): number {
    const window = this.windows.get(ip)
    return window === undefined ? 0 : Math.max(0, window.resetAt - now)
  }

  /** Forgets windows that have ended. */
  sweep (now: number): void {
    for (const [ip, window] of this.windows) {
      if (now >= window.resetAt) this.windows.delete(ip)
    }
  }

  get trackedAddresses (): number {
    return this.windows.size
  }
}

/**
 * The key a source address is counted under by the per-IP limits: IPv4 as
 * it is, IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as its IPv4, other IPv6 as its
 * network of `ipv6PrefixLength` bits (`2001:db8:1:2::/64`): one subscriber
 * usually holds a whole /64 and could otherwise rotate through it.
 */
export function addressKey (ip: string, ipv6PrefixLength: number): string {
  if (!ip.includes(':')) return ip
  if (ip.startsWith('::ffff:') && ip.includes('.')) return ip.slice(7)
  if (ipv6PrefixLength >= 128) return ip
  let address: ipaddr.IPv6
  try {
    address = ipaddr.IPv6.parse(ip)
  } catch {
    return ip
  }
  if (address.isIPv4MappedAddress()) return address.toIPv4Address().toString()
  const parts = address.parts.slice()
  for (let i = 0; i < 8; i++) {
    const keep = Math.min(16, Math.max(0, ipv6PrefixLength - i * 16))
    parts[i] &= keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff
  }
  return `${new ipaddr.IPv6(parts).toString()}/${ipv6PrefixLength}`
}
