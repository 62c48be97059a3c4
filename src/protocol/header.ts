import { CloseCode, CloseReason } from './close.js'

/** A valid join frame (SPEC §2). */
export interface JoinHeader {
  uid: string
  channel: string
  /** The `auth` field as sent; `undefined` when absent or `null`. */
  auth: string | undefined
  /**
   * The join frame as later joiners will see it in the history: the bytes as
   * received when there was no `auth` field, otherwise the same JSON object
   * without `auth`, so a credential is never replayed to other users.
   */
  storedFrame: Buffer
}

export interface HeaderRejection {
  code: CloseCode
  reason: string
}

export type HeaderResult =
  | { ok: true, header: JoinHeader }
  | { ok: false, rejection: HeaderRejection }

function reject (code: CloseCode, reason: string): HeaderResult {
  return { ok: false, rejection: { code, reason } }
}

function isAscii (text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return false
  }
  return true
}

/** Why `value` is not a valid `uid`/`channel`, or `null` when it is. */
function fieldProblem (name: 'uid' | 'channel', value: unknown): string | null {
  if (value === undefined) return `invalid header: ${name} missing`
  if (typeof value !== 'string') return `invalid header: ${name} must be a string`
  if (value.length === 0) return `invalid header: ${name} is empty`
  if (!isAscii(value)) return `invalid header: ${name} must be ASCII`
  return null
}

function withoutAuth (fields: Record<string, unknown>, uid: string, channel: string): Buffer {
  const copy: Record<string, unknown> = {}
  for (const name of Object.keys(fields)) {
    // defineProperty keeps a "__proto__" key an ordinary property, as JSON.parse made it.
    if (name !== 'auth') Object.defineProperty(copy, name, { value: fields[name], enumerable: true, writable: true, configurable: true })
  }
  try {
    return Buffer.from(JSON.stringify(copy))
  } catch {
    // Nesting too deep for JSON.stringify's recursion: keep what joiners need.
    return Buffer.from(JSON.stringify({ uid, channel }))
  }
}

/**
 * Validates the first frame of a connection (SPEC §2): a text frame of at most
 * `maxBytes` holding a JSON object with non-empty ASCII string `uid` and
 * `channel` and an optional string `auth`. Never throws; authentication is
 * checked separately (see `verifyAuth`).
 */
export function parseHeader (data: Buffer, isBinary: boolean, maxBytes: number): HeaderResult {
  if (isBinary) return reject(CloseCode.UNSUPPORTED_DATA, CloseReason.HEADER_BINARY)
  if (data.length > maxBytes) return reject(CloseCode.MESSAGE_TOO_BIG, CloseReason.HEADER_TOO_LARGE)

  let parsed: unknown
  try {
    parsed = JSON.parse(data.toString('utf8'))
  } catch {
    return reject(CloseCode.POLICY_VIOLATION, CloseReason.HEADER_NOT_JSON)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return reject(CloseCode.POLICY_VIOLATION, CloseReason.HEADER_NOT_OBJECT)
  }

  // Own properties only: a "__proto__" or "constructor" key must never be mistaken for a field.
  const fields = parsed as Record<string, unknown>
  const uid = Object.hasOwn(fields, 'uid') ? fields.uid : undefined
  const channel = Object.hasOwn(fields, 'channel') ? fields.channel : undefined
  const auth = Object.hasOwn(fields, 'auth') ? fields.auth : undefined

  const problem = fieldProblem('uid', uid) ?? fieldProblem('channel', channel)
  if (problem !== null) return reject(CloseCode.POLICY_VIOLATION, problem)
  // `null` reads as absent, as the reference's Option<String> does.
  if (auth !== undefined && auth !== null && typeof auth !== 'string') {
    return reject(CloseCode.POLICY_VIOLATION, CloseReason.AUTH_NOT_STRING)
  }

  const header: JoinHeader = {
    uid: uid as string,
    channel: channel as string,
    auth: typeof auth === 'string' ? auth : undefined,
    storedFrame: Object.hasOwn(fields, 'auth') ? withoutAuth(fields, uid as string, channel as string) : data
  }
  return { ok: true, header }
}
