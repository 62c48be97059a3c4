/** The WebSocket subprotocol of Mles v2 (SPEC §1), offered by clients and chosen by the server. */
export const MLES_PROTOCOL = 'mles-websocket'
