import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { verifyAuth } from './auth.js'
import type { Channel } from './hub/channel.js'
import type { Hub, HubMember } from './hub/hub.js'
import type { KeepAliveTarget } from './keepalive.js'
import type { Metrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { CloseCode, CloseReason } from './protocol/close.js'
import { parseHeader } from './protocol/header.js'

/** What a session needs of the server that owns it. */
export interface SessionContext {
  readonly options: ResolvedOptions
  readonly hub: Hub<Session>
  readonly counters: Metrics
  readonly log: FastifyBaseLogger
  sessionClosed: (session: Session) => void
}

const OPEN = 1
/** A ping frame with no payload; constant, so keep-alive allocates nothing. */
const PING_FRAME = Buffer.from([0x89, 0x00])
const kSession = Symbol('mles.session')

interface SessionSocket extends WebSocket {
  [kSession]: Session
  /** ws keeps the underlying socket here; fan-out writes pre-encoded frames to it directly. */
  _socket: Socket
}

// Shared listeners, bound to a session through the socket: no closures per connection.
function onMessage (this: WebSocket, data: RawData, isBinary: boolean): void {
  const session = (this as SessionSocket)[kSession]
  try {
    session.receive(data as Buffer, isBinary)
  } catch (error) {
    // Never reached by any known input; if a bug throws, it costs one connection, not the process.
    session.internalError(error)
  }
}
function onPong (this: WebSocket): void {
  (this as SessionSocket)[kSession].missedPongs = 0
}
function onClose (this: WebSocket): void {
  (this as SessionSocket)[kSession].closed()
}
function onError (this: WebSocket, error: Error): void {
  (this as SessionSocket)[kSession].failed(error)
}
function onJoinTimeout (session: Session): void {
  session.joinTimedOut()
}

/**
 * One connection's life (SPEC §2, §4, §7): awaiting its join frame, then a
 * channel member publishing within its size and rate limits, until it closes
 * or is closed for cause.
 */
export class Session implements HubMember, KeepAliveTarget {
  uid = ''
  memberIndex = -1
  corked = false
  bufferLimit: number
  missedPongs = 0
  readonly socket: Socket
  private channel: Channel<Session> | null = null
  private shut = false
  private joinTimer: NodeJS.Timeout | null
  private rateWindowStart = 0
  private rateCount = 0

  constructor (
    readonly ws: WebSocket,
    private readonly context: SessionContext
  ) {
    const socket = ws as SessionSocket
    socket[kSession] = this
    this.socket = socket._socket
    this.bufferLimit = context.options.maxBufferedBytes
    ws.on('message', onMessage)
    ws.on('pong', onPong)
    ws.on('close', onClose)
    ws.on('error', onError)
    this.joinTimer = setTimeout(onJoinTimeout, context.options.joinTimeoutMs, this)
  }

  isOpen (): boolean {
    return !this.shut && this.ws.readyState === OPEN
  }

  receive (data: Buffer, isBinary: boolean): void {
    this.missedPongs = 0
    const channel = this.channel
    if (channel === null) {
      if (!this.shut) this.join(data, isBinary)
      return
    }
    const { counters: metrics, options } = this.context
    metrics.totalMessagesReceived++
    if (data.length > options.maxMessageBytes) {
      metrics.droppedOversize++
      return
    }
    if (options.messagesPerSecond !== 0) {
      const now = Date.now()
      if (now - this.rateWindowStart >= 1000) {
        this.rateWindowStart = now
        this.rateCount = 0
      }
      if (++this.rateCount > options.messagesPerSecond) {
        metrics.droppedRate++
        return
      }
    }
    this.context.hub.publish(channel, data, isBinary, this)
  }

  private join (data: Buffer, isBinary: boolean): void {
    this.clearJoinTimer()
    const { counters: metrics, options, log } = this.context
    const result = parseHeader(data, isBinary, options.maxMessageBytes)
    if (!result.ok) {
      metrics.rejectedHeaders++
      log.debug({ reason: result.rejection.reason }, 'mles: join refused')
      this.close(result.rejection.code, result.rejection.reason)
      return
    }
    const { uid, channel: channelName, auth, storedFrame } = result.header
    if (!verifyAuth(uid, channelName, auth, options.key)) {
      metrics.rejectedAuth++
      log.debug({ uid, channel: channelName }, 'mles: authentication failed')
      this.close(CloseCode.POLICY_VIOLATION, CloseReason.AUTH_FAILED)
      return
    }
    this.uid = uid
    const channel = this.context.hub.join(this, channelName, storedFrame)
    if (channel === null) {
      metrics.rejectedDuplicates++
      log.debug({ uid, channel: channelName }, 'mles: duplicate uid refused')
      this.close(CloseCode.POLICY_VIOLATION, CloseReason.DUPLICATE)
      return
    }
    this.channel = channel
    log.debug({ uid, channel: channelName }, 'mles: joined')
  }

  ping (): void {
    if (this.isOpen()) this.socket.write(PING_FRAME)
  }

  expire (): void {
    if (this.shut) return
    this.context.counters.droppedKeepalive++
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.KEEPALIVE_TIMEOUT)
  }

  joinTimedOut (): void {
    this.joinTimer = null
    if (this.shut || this.channel !== null) return
    this.context.counters.droppedJoinTimeout++
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.JOIN_TIMEOUT)
  }

  dropAsSlowConsumer (): void {
    // The hub has already taken this member out of its channel.
    this.channel = null
    this.context.counters.droppedSlowConsumers++
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.SLOW_CONSUMER)
  }

  /** Leaves the channel at once and starts the closing handshake. */
  close (code: number, reason: string): void {
    if (this.shut) return
    this.shut = true
    this.clearJoinTimer()
    this.leaveChannel()
    this.ws.close(code, reason)
  }

  /** The socket is gone (ws 'close'). */
  closed (): void {
    this.shut = true
    this.clearJoinTimer()
    this.leaveChannel()
    this.context.sessionClosed(this)
  }

  internalError (error: unknown): void {
    this.context.counters.protocolErrors++
    this.context.log.error({ err: error }, 'mles: internal error; closing the connection')
    this.close(CloseCode.INTERNAL_ERROR, CloseReason.INTERNAL_ERROR)
  }

  failed (error: Error): void {
    this.context.counters.protocolErrors++
    this.context.log.debug({ err: error }, 'mles: connection error')
  }

  private leaveChannel (): void {
    if (this.channel !== null) {
      this.context.hub.leave(this, this.channel)
      this.channel = null
    }
  }

  private clearJoinTimer (): void {
    if (this.joinTimer !== null) {
      clearTimeout(this.joinTimer)
      this.joinTimer = null
    }
  }
}
