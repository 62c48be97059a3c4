/**
 * fastify-mles/client — what a client needs to speak Mles v2 (SPEC §2, §3).
 * The full MlesClient (reconnect, dedup, resync, proxy) builds on these.
 */
import { computeAuth } from '../protocol/siphash.js'

export { computeAuth, sipHash24Hex } from '../protocol/siphash.js'

/** The WebSocket subprotocol to offer. */
export const MLES_PROTOCOL = 'mles-websocket'

export interface JoinOptions {
  uid: string
  channel: string
  /** The server's shared key (its MLES_KEY), when it has one. */
  key?: string
  /** Send `auth` even without a key (a keyless server then checks it). Default false. */
  authWithoutKey?: boolean
}

/** The first frame a client sends: `{"uid", "channel", "auth"?}` as JSON text. */
export function joinFrame (options: JoinOptions): string {
  const { uid, channel, key } = options
  if (key !== undefined || options.authWithoutKey === true) {
    return JSON.stringify({ uid, channel, auth: computeAuth(uid, channel, key) })
  }
  return JSON.stringify({ uid, channel })
}
