import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/** One account: a name (also the Mles uid and the private channel `user:<name>`) and its password hash. */
export interface WebsiteUser {
  name: string
  /** `scrypt$N$r$p$salt$hash`, salt and hash in base64url, as `hashPassword` makes it. */
  passwordHash: string
}

/**
 * The demo accounts; their passwords (for trying the example only) are
 * alice / wonderland, bob / the-builder and carol / christmas.
 */
export const DEMO_USERS: readonly WebsiteUser[] = Object.freeze([
  { name: 'alice', passwordHash: 'scrypt$16384$8$1$ZkD6R9s9UKKIWJnxoApUug$iMAqH5aQr4qDxhF1xdDvRRy_LXyxuQmPqJuzCfP2oHA' },
  { name: 'bob', passwordHash: 'scrypt$16384$8$1$9R3GCv2AuHgefmEf5j_3uw$U-JZ3Pw1-AwyCUotIModqJUoc9xSVWMpvbsNjMvp2p4' },
  { name: 'carol', passwordHash: 'scrypt$16384$8$1$n5G_Wcsm-g8Wi0AkVpayjw$IaKCtbV4qZQcPTLNhtaq59cfDbvzWEW8vTHuUnT6G28' }
])

/** Names usable as a uid and inside a channel name: short, ASCII, no `:`. */
export const USER_NAME = /^[a-z][a-z0-9_-]{0,31}$/

const KEY_BYTES = 32
const COST = { N: 16384, r: 8, p: 1 }

async function scrypt (password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    scryptCallback(password.normalize('NFC'), salt, KEY_BYTES, options, (error, key) => { error === null ? resolve(key) : reject(error) })
  })
}

/** A new `passwordHash` for `password`, with a fresh random salt. */
export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scrypt(password, salt, COST)
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

function parseHash (passwordHash: string): { options: ScryptOptions, salt: Buffer, key: Buffer } | null {
  const parts = passwordHash.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null
  const [N, r, p] = parts.slice(1, 4).map(Number)
  if (![N, r, p].every(Number.isInteger)) return null
  return { options: { N, r, p }, salt: Buffer.from(parts[4], 'base64url'), key: Buffer.from(parts[5], 'base64url') }
}

/** Hashed for unknown names, so a wrong name takes as long as a wrong password. */
const DUMMY = parseHash('scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')

/** The account `name` / `password` opens, or null; the comparison is constant-time. */
export async function checkPassword (users: readonly WebsiteUser[], name: string, password: string): Promise<WebsiteUser | null> {
  const user = users.find((candidate) => candidate.name === name)
  const stored = parseHash(user?.passwordHash ?? '') ?? DUMMY
  if (stored === null) return null
  const key = await scrypt(password, stored.salt, stored.options)
  const same = key.length === stored.key.length && timingSafeEqual(key, stored.key)
  return user !== undefined && stored !== DUMMY && same ? user : null
}
