import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { verifyAuth } from './auth.js'
import type { Lease, RedisBus } from './cluster/redis-bus.js'
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
  readonly hub: Hub<HubMember>
  readonly counters: Metrics
  readonly log: FastifyBaseLogger
  /** The Redis engine in cluster mode; null on a single node. */
  readonly cluster: RedisBus<HubMember> | null
  sessionClosed: (session: Session) => void
}

/** Frames a client may send while its join is checked with the cluster; more are dropped (counted as over the rate). */
const MAX_FRAMES_WHILE_JOINING = 256

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
  // Kept lean: an idle member costs this object, ws's own objects and its socket.
  uid = ''
  memberIndex = -1
  readonly speaksV1 = false
  catchingUp = false
  corked = false
  bufferLimit: number
  private channel: Channel<HubMember> | null = null
  /** Cluster mode: the uid taken cluster-wide while a member. */
  private lease: Lease | null = null
  /** Cluster mode: data frames received while the join is under way, in order. */
  private early: Array<{ data: Buffer, isBinary: boolean }> | null = null
  private shut = false
  private joinTimer: NodeJS.Timeout | null
  private rateWindowStart = 0
  private rateCount = 0
  private missedTicks = 0
  private bytesReadAtTick = 0

  constructor (
    readonly ws: WebSocket,
    private readonly context: SessionContext
  ) {
    const socket = ws as SessionSocket
    socket[kSession] = this
    this.bufferLimit = context.options.maxBufferedBytes
    ws.on('message', onMessage)
    ws.on('close', onClose)
    // Take over 'error' from whoever upgraded (adding before removing, so the
    // listener table never sees a delete, which would make it a slower dictionary).
    const inherited = ws.listeners('error') as Array<(...args: unknown[]) => void>
    ws.on('error', onError)
    for (const listener of inherited) ws.off('error', listener)
    this.joinTimer = setTimeout(onJoinTimeout, context.options.joinTimeoutMs, this)
  }

  /** The connection's TCP (or TLS) socket, kept by ws; fan-out writes pre-encoded frames to it. */
  get socket (): Socket {
    return (this.ws as SessionSocket)._socket
  }

  isOpen (): boolean {
    return !this.shut && this.ws.readyState === OPEN
  }

  receive (data: Buffer, isBinary: boolean): void {
    const channel = this.channel
    if (channel === null) {
      if (this.early !== null) {
        if (this.early.length < MAX_FRAMES_WHILE_JOINING) this.early.push({ data, isBinary })
        else this.context.counters.droppedRate++
      } else if (!this.shut) {
        this.join(data, isBinary)
      }
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
    const cluster = this.context.cluster
    if (cluster === null) {
      this.enter(channelName, storedFrame)
      return
    }
    this.early = []
    cluster.admit(channelName, uid, (lease) => {
      const early = this.early ?? []
      this.early = null
      if (lease === null) {
        this.refuseDuplicate(channelName)
        return
      }
      if (this.shut) {
        cluster.release(lease)
        return
      }
      this.lease = lease
      if (!this.enter(channelName, storedFrame)) return
      for (const frame of early) {
        if (this.channel === null) break
        this.receive(frame.data, frame.isBinary)
      }
    }).catch((error: unknown) => { this.internalError(error) })
  }

  /** Joins the hub's channel; false (and the connection closing) if the uid is taken here. */
  private enter (channelName: string, storedFrame: Buffer): boolean {
    const channel = this.context.hub.join(this, channelName, storedFrame)
    if (channel === null) {
      this.refuseDuplicate(channelName)
      return false
    }
    this.channel = channel
    this.context.log.debug({ uid: this.uid, channel: channelName }, 'mles: joined')
    return true
  }

  private refuseDuplicate (channelName: string): void {
    this.context.counters.rejectedDuplicates++
    this.context.log.debug({ uid: this.uid, channel: channelName }, 'mles: duplicate uid refused')
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.DUPLICATE)
  }

  keepAliveTick (maxMissed: number): void {
    if (!this.isOpen()) return
    const bytesRead = this.socket.bytesRead
    if (bytesRead !== this.bytesReadAtTick) {
      this.bytesReadAtTick = bytesRead
      this.missedTicks = 0
    } else if (this.missedTicks >= maxMissed) {
      this.context.counters.droppedKeepalive++
      this.close(CloseCode.POLICY_VIOLATION, CloseReason.KEEPALIVE_TIMEOUT)
      return
    }
    this.missedTicks++
    this.socket.write(PING_FRAME)
  }

  joinTimedOut (): void {
    this.joinTimer = null
    if (this.shut || this.channel !== null || this.early !== null) return
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
    if (this.lease !== null) {
      this.context.cluster?.release(this.lease)
      this.lease = null
    }
  }

  private clearJoinTimer (): void {
    if (this.joinTimer !== null) {
      clearTimeout(this.joinTimer)
      this.joinTimer = null
    }
  }
}
