import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { verifyAuth } from './auth.js'
import type { ChannelRefusal } from './channel-limits.js'
import { readFairly } from './fair-reading.js'
import type { Lease, RedisBus } from './cluster/redis-bus.js'
import type { Channel } from './hub/channel.js'
import type { Hub, HubMember } from './hub/hub.js'
import { PING_FRAME, stillAlive, type KeepAliveTarget } from './keepalive.js'
import type { Metrics } from './metrics.js'
import type { ThrottledLog } from './throttled-log.js'
import type { MlesAuthorization, ResolvedOptions } from './options.js'
import { CloseCode, CloseReason } from './protocol/close.js'
import { parseHeader } from './protocol/header.js'

/** What a session needs of the server that owns it. */
export interface SessionContext {
  readonly options: ResolvedOptions
  readonly hub: Hub<HubMember>
  readonly counters: Metrics
  readonly log: FastifyBaseLogger
  /** Refusals and failures an operator acts on, logged at most once a minute per kind. */
  readonly notices: ThrottledLog
  /** The Redis engine in cluster mode; null on a single node. */
  readonly cluster: RedisBus<HubMember> | null
  sessionClosed: (session: Session) => void
  /** Why a join from `ip` may not create channel `name` now (`maxChannels`, `perIpChannelLimit`); null when it may. */
  channelRefusal: (name: string, ip: string) => ChannelRefusal | null
  /** A member entered its channel (after its replay). */
  memberJoined: (member: Session) => void
  /** A member left the channel it had entered, for whatever reason. */
  memberLeft: (member: Session) => void
}

/**
 * Frames a client may send while its join is being decided (by `authorize`,
 * by the cluster); more, or more than `maxBufferedBytes` of them, are dropped
 * (counted as over the rate).
 */
const MAX_FRAMES_WHILE_JOINING = 256

const OPEN = 1
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
function onAuthorizeTimeout (session: Session): void {
  session.authorizeTimedOut()
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
  joinSequence = 0
  corked = false
  bufferLimit: number
  /** The channel entered, kept for the leave event after the hub has let the member go; '' before. */
  channelName = ''
  /** Where the member connects from (`request.ip`) and its `Origin` header, taken when it enters. */
  ip = ''
  origin: string | null = null
  /** `authorize` answered `publish: false`: frames from this member are dropped. */
  private readOnly = false
  /** The upgrade request, kept until the join is decided. */
  private request: FastifyRequest | null
  private channel: Channel<HubMember> | null = null
  /** Cluster mode: the uid taken cluster-wide while a member. */
  private lease: Lease | null = null
  /** Data frames received while the join is decided (`authorize`, cluster), in order. */
  private early: Array<{ data: Buffer, isBinary: boolean }> | null = null
  private earlyBytes = 0
  private shut = false
  /** The client closed while its join was still being admitted, having sent frames meanwhile: they still go out. */
  private leftWhileJoining = false
  private joinTimer: NodeJS.Timeout | null
  private authorizeTimer: NodeJS.Timeout | null = null
  private rateWindowStart = 0
  private rateCount = 0
  /** Keep-alive state (`stillAlive`). */
  missedTicks = 0
  bytesReadAtTick = 0

  constructor (
    readonly ws: WebSocket,
    private readonly context: SessionContext,
    request: FastifyRequest
  ) {
    this.request = request
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
    readFairly(socket._socket)
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
        if (this.early.length < MAX_FRAMES_WHILE_JOINING && this.earlyBytes + data.length <= this.bufferLimit) {
          this.early.push({ data, isBinary })
          this.earlyBytes += data.length
        } else {
          this.context.counters.droppedRate++
        }
      } else if (!this.shut) {
        this.join(data, isBinary)
      }
      return
    }
    const { counters: metrics, options } = this.context
    metrics.totalMessagesReceived++
    if (this.readOnly) {
      metrics.droppedReadonly++
      return
    }
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
    const authorize = options.authorize
    if (authorize === undefined) {
      this.admit(channelName, storedFrame)
      return
    }
    this.early = []
    this.authorizeTimer = setTimeout(onAuthorizeTimeout, options.authorizeTimeoutMs, this)
    let answer: ReturnType<typeof authorize>
    try {
      answer = authorize(this.request as FastifyRequest, { uid, channel: channelName })
    } catch (error) {
      this.authorizeFailed(error)
      return
    }
    if (answer instanceof Promise) {
      answer.then((value) => { this.authorized(value, channelName, storedFrame) }, (error: unknown) => { this.authorizeFailed(error) })
    } else {
      this.authorized(answer, channelName, storedFrame)
    }
  }

  /** The answer of `authorize`: enter, refuse, or fail; nothing if the connection is gone or timed out meanwhile. */
  private authorized (answer: MlesAuthorization, channelName: string, storedFrame: Buffer): void {
    if (this.shut) return
    this.clearAuthorizeTimer()
    let uid: unknown
    let publish: unknown
    const isObject = typeof answer === 'object' && answer !== null && !Array.isArray(answer)
    if (isObject) ({ uid, publish } = answer)
    if ((!isObject && typeof answer !== 'boolean') || (uid !== undefined && typeof uid !== 'string') || (publish !== undefined && typeof publish !== 'boolean')) {
      this.authorizeFailed(new TypeError(`authorize must answer true, false or { uid?: string, publish?: boolean } (answered ${describeAnswer(answer)})`))
      return
    }
    const allowed = answer !== false
    const { counters, log } = this.context
    if (!allowed) {
      counters.rejectedAuthorize++
      log.debug({ uid: this.uid, channel: channelName }, 'mles: join forbidden by authorize')
      this.close(CloseCode.POLICY_VIOLATION, CloseReason.FORBIDDEN)
      return
    }
    if (uid !== undefined && uid !== this.uid) {
      counters.rejectedAuthorize++
      log.debug({ uid: this.uid, allowed: uid, channel: channelName }, 'mles: join as another uid refused')
      this.close(CloseCode.POLICY_VIOLATION, CloseReason.UID_NOT_ALLOWED)
      return
    }
    this.readOnly = publish === false
    this.admit(channelName, storedFrame)
  }

  private authorizeFailed (error: unknown): void {
    if (this.shut) return
    this.clearAuthorizeTimer()
    this.context.counters.authorizeErrors++
    this.context.log.debug({ err: error, uid: this.uid }, 'mles: authorize failed; closing the connection with 1011')
    this.context.notices.write('error', 'authorize-error', { err: error, uid: this.uid }, 'mles: authorize failed; closing the connection with 1011')
    this.close(CloseCode.INTERNAL_ERROR, CloseReason.INTERNAL_ERROR)
  }

  authorizeTimedOut (): void {
    this.authorizeTimer = null
    if (this.shut) return
    this.context.counters.rejectedAuthorize++
    this.context.notices.write('warn', 'authorize-timeout', { uid: this.uid, timeoutMs: this.context.options.authorizeTimeoutMs }, 'mles: authorize did not answer in time; join refused')
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.AUTHORIZE_TIMEOUT)
  }

  /** Takes the uid (cluster-wide in cluster mode), enters the channel, then publishes the frames held meanwhile. */
  private admit (channelName: string, storedFrame: Buffer): void {
    const cluster = this.context.cluster
    if (cluster === null) {
      const early = this.early
      this.early = null
      if (this.enter(channelName, storedFrame)) this.publishEarly(early)
      return
    }
    this.early ??= []
    cluster.admit(channelName, this.uid, (lease) => {
      const early = this.early
      this.early = null
      if (lease === null) {
        this.refuseDuplicate(channelName)
        return
      }
      if (this.shut) {
        if (this.leftWhileJoining && early !== null && early.length > 0) {
          // As if it had joined and left at once: its frames were sent after its join, and reach the channel.
          this.lease = lease
          if (this.enter(channelName, storedFrame)) this.publishEarly(early)
          this.leaveChannel()
          return
        }
        cluster.release(lease)
        return
      }
      this.lease = lease
      if (this.enter(channelName, storedFrame)) this.publishEarly(early)
    }).catch((error: unknown) => { this.internalError(error) })
  }

  private publishEarly (early: Array<{ data: Buffer, isBinary: boolean }> | null): void {
    this.earlyBytes = 0
    if (early === null) return
    for (const frame of early) {
      if (this.channel === null) break
      this.receive(frame.data, frame.isBinary)
    }
  }

  /** Joins the hub's channel; false (and the connection closing) if the uid is taken here. */
  private enter (channelName: string, storedFrame: Buffer): boolean {
    const request = this.request
    if (request !== null) this.ip = request.ip
    const refusal = this.context.channelRefusal(channelName, this.ip)
    if (refusal !== null) {
      this.context.log.debug({ uid: this.uid, channel: channelName, refusal }, 'mles: join would create a channel past a limit; closing with 1013')
      this.close(CloseCode.TRY_AGAIN_LATER, refusal === 'channel rate' ? CloseReason.CHANNEL_RATE : CloseReason.TOO_MANY_CHANNELS)
      return false
    }
    const channel = this.context.hub.join(this, channelName, storedFrame)
    if (channel === null) {
      this.refuseDuplicate(channelName)
      return false
    }
    this.channel = channel
    this.channelName = channelName
    this.request = null
    if (request !== null) {
      const origin = request.headers.origin
      this.origin = typeof origin === 'string' ? origin : null
    }
    this.context.log.debug({ uid: this.uid, channel: channelName }, 'mles: joined')
    this.context.memberJoined(this)
    return true
  }

  private refuseDuplicate (channelName: string): void {
    this.context.counters.rejectedDuplicates++
    this.context.log.debug({ uid: this.uid, channel: channelName }, 'mles: duplicate uid refused')
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.DUPLICATE)
  }

  keepAliveTick (maxMissed: number): void {
    if (!this.isOpen()) return
    if (stillAlive(this, this.socket.bytesRead, maxMissed)) {
      this.socket.write(PING_FRAME)
      return
    }
    this.context.counters.droppedKeepalive++
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.KEEPALIVE_TIMEOUT)
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
    this.clearAuthorizeTimer()
    this.leaveChannel()
    this.ws.close(code, reason)
  }

  /** The socket is gone (ws 'close'). */
  closed (): void {
    // Closed by the client (not by us) while admitted, frames in hand.
    this.leftWhileJoining = !this.shut && this.channel === null && this.early !== null && this.early.length > 0
    this.shut = true
    this.clearJoinTimer()
    this.clearAuthorizeTimer()
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
    this.request = null
    if (this.channel !== null) {
      this.context.hub.leave(this, this.channel)
      this.channel = null
    }
    if (this.channelName !== '') {
      this.context.memberLeft(this)
      this.channelName = ''
    }
    if (this.lease !== null) {
      this.context.cluster?.release(this.lease)
      this.lease = null
    }
  }

  private clearAuthorizeTimer (): void {
    if (this.authorizeTimer !== null) {
      clearTimeout(this.authorizeTimer)
      this.authorizeTimer = null
    }
  }

  private clearJoinTimer (): void {
    if (this.joinTimer !== null) {
      clearTimeout(this.joinTimer)
      this.joinTimer = null
    }
  }
}

function describeAnswer (answer: unknown): string {
  if (answer === null || answer === undefined || typeof answer === 'number' || typeof answer === 'string') return JSON.stringify(answer) ?? String(answer)
  if (Array.isArray(answer)) return 'an array'
  if (typeof answer === 'object') {
    try {
      return JSON.stringify(answer).slice(0, 80)
    } catch {}
  }
  return `a ${typeof answer}`
}
