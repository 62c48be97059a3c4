/**
 * fastify-mles/client — an Mles v2 client for Node and browsers (SPEC §2, §3, §5, §6).
 */
import { computeAuth } from '../protocol/siphash.js'

export { computeAuth, sipHash24Hex } from '../protocol/siphash.js'
export { MlesClient, frameText } from './mles-client.js'
export { MLES_PROTOCOL } from '../protocol/subprotocol.js'
export type { MlesClientOptions, MlesClientEvents, MlesClientState, MlesMessage, ReconnectOptions, WebSocketFactory, WebSocketLike } from './mles-client.js'
export { FrameDeduplicator, frameHash } from './dedup.js'
export { MlesProxy } from './proxy.js'
export type { MlesProxyOptions, MlesProxyEvents } from './proxy.js'
export { MlesMqttBridge } from './mqtt-bridge.js'
export type { MlesMqttBridgeOptions, MlesMqttBridgeEvents } from './mqtt-bridge.js'
export { MlesMissingPackageError } from '../optional.js'

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
