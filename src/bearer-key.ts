import { createHash, timingSafeEqual } from 'node:crypto'

/** What an `Authorization` header holds against the key. */
export type BearerCheck = 'valid' | 'missing' | 'wrong'

const BEARER = /^Bearer +(\S+) *$/i

function sha256 (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/**
 * One secret key sent as `Authorization: Bearer <key>` (RFC 6750). Digests
 * are compared rather than the keys themselves, so the comparison takes the
 * same time whatever the length and content of what was sent.
 */
export class BearerKey {
  private readonly digest: Buffer

  constructor (key: string) {
    this.digest = sha256(key)
  }

  check (authorization: string | undefined): BearerCheck {
    const token = authorization === undefined ? null : BEARER.exec(authorization)?.[1]
    if (token === null || token === undefined) return 'missing'
    return timingSafeEqual(sha256(token), this.digest) ? 'valid' : 'wrong'
  }
}
