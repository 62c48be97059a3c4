/**
 * Close codes and reasons the server uses (SPEC §2, ours: every refusal says why).
 * Reasons stay far below the 123-byte limit of a close frame.
 */
export const CloseCode = {
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** The join frame was binary. */
  UNSUPPORTED_DATA: 1003,
  /** Refused by policy: bad header, failed auth, refused by `authorize`, duplicate uid, timeouts, slow consumer. */
  POLICY_VIOLATION: 1008,
  /** The join frame was larger than allowed. */
  MESSAGE_TOO_BIG: 1009,
  /** A server bug, or the app's `authorize` failed; the connection is closed, the server carries on. */
  INTERNAL_ERROR: 1011,
  /** A limit of the server was reached (`maxChannels`, `perIpChannelLimit`): a later retry may succeed. */
  TRY_AGAIN_LATER: 1013
} as const

export type CloseCode = typeof CloseCode[keyof typeof CloseCode]

export const CloseReason = {
  SHUTDOWN: 'server shutting down',
  HEADER_BINARY: 'invalid header: binary frame',
  HEADER_TOO_LARGE: 'invalid header: too large',
  HEADER_NOT_JSON: 'invalid header: not JSON',
  HEADER_NOT_OBJECT: 'invalid header: not a JSON object',
  AUTH_NOT_STRING: 'invalid header: auth must be a string',
  AUTH_FAILED: 'authentication failed',
  DUPLICATE: 'uid already joined on this channel',
  JOIN_TIMEOUT: 'join timeout',
  FORBIDDEN: 'forbidden',
  UID_NOT_ALLOWED: 'uid not allowed',
  AUTHORIZE_TIMEOUT: 'authorization timeout',
  KEEPALIVE_TIMEOUT: 'keep-alive timeout',
  SLOW_CONSUMER: 'slow consumer',
  TOO_MANY_CHANNELS: 'try again later: too many channels',
  CHANNEL_RATE: 'try again later: too many new channels from this address',
  INTERNAL_ERROR: 'internal error'
} as const
