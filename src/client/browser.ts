// Entry of the browser bundle (dist/browser/mles-client.js): the isomorphic
// parts of fastify-mles/client, without the Node-only MQTT bridge.
export { MlesClient, frameText } from './mles-client.js'
export { MLES_PROTOCOL } from '../protocol/subprotocol.js'
export type { MlesClientOptions, MlesClientEvents, MlesClientState, MlesMessage, ReconnectOptions } from './mles-client.js'
export { MlesProxy } from './proxy.js'
export { FrameDeduplicator, frameHash } from './dedup.js'
export { computeAuth, sipHash24Hex } from '../protocol/siphash.js'
