import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { V1Translator } from '../hub/hub.js'
import { addressKey, type PerIpLimiter } from '../ip-limiter.js'
import type { Metrics } from '../metrics.js'
import { cidOfKey, v1Key, type V1KeyMode } from './key.js'
import { encodeFrame } from './frame.js'
import { encodeMsg } from './msg.js'
import type { WebSocket } from 'ws'
import { KeepAlive } from '../keepalive.js'
import { CloseCode, CloseReason } from '../protocol/close.js'
import type { V1MemberContext } from './member.js'
import { V1Session } from './session.js'
import { V1WebSocketSession } from './websocket.js'

/**
 * Frames for v1 members made from frames of v2 clients (and of the server):
 * a `Msg` with the sender's uid, keyed as that sender would key it in
 * shared-key mode (or over uid and channel alone), which v1 clients ignore.
 */
export function v1Translator (keyMode: V1KeyMode): V1Translator {
  return {
    frame: (channel, uid, message) => {
      const key = v1Key(keyMode.sharedKey !== undefined ? [keyMode.sharedKey, uid, channel] : [uid, channel])
      return encodeFrame(encodeMsg({ uid, channel, message }), cidOfKey(key), key)
    }
  }
}

/** What the listener needs of the endpoint that owns it. */
export interface V1ListenerOwner {
  readonly counters: Metrics
  /** Whether one more connection fits under `maxConnections` (counted when not). */
  admitsConnection: () => boolean
}

/**
 * The v1 TCP listener (SPEC-v1 §1): accepts connections, applies the per-IP
 * limit, owns the v1 sessions — and those of CBOR WebSocket clients at
 * `v1.webSocketPath`, whose upgrades the plugin's route takes.
 */
export class V1Listener {
  private readonly server: Server
  private readonly sessions = new Set<V1Session>()
  private readonly webSockets = new Set<V1WebSocketSession>()
  private readonly keepAlive: KeepAlive

  constructor (
    private readonly context: V1MemberContext,
    private readonly limiter: PerIpLimiter,
    private readonly owner: V1ListenerOwner,
    private readonly log: FastifyBaseLogger
  ) {
    this.server = createServer((socket) => { this.accept(socket) })
    this.keepAlive = new KeepAlive(this.webSockets, context.options.pingIntervalMs, context.options.maxMissedPongs)
  }

  /** v1 connections now: TCP and WebSocket. */
  get connections (): number {
    return this.sessions.size + this.webSockets.size
  }

  /** Takes over an upgraded WebSocket connection of a CBOR client (`v1.webSocketPath`). */
  acceptWebSocket (ws: WebSocket): void {
    const session = new V1WebSocketSession(ws, { ...this.context, v1WebSocketClosed: (closed) => { this.webSockets.delete(closed) } })
    this.webSockets.add(session)
    this.keepAlive.start()
  }

  async listen (port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen({ port, host }, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.server.on('error', (error) => { this.log.error({ err: error }, 'mles v1: listener error') })
    return this.server.address() as AddressInfo
  }

  get address (): AddressInfo | null {
    const address = this.server.address()
    return address === null || typeof address === 'string' ? null : address
  }

  private accept (socket: Socket): void {
    const ip = addressKey(socket.remoteAddress ?? '', this.context.options.ipv6PrefixLength)
    if (this.limiter.take(ip, Date.now()) > 0) {
      this.owner.counters.droppedByIp++
      socket.destroy()
      return
    }
    if (!this.owner.admitsConnection()) {
      socket.destroy()
      return
    }
    const session = new V1Session(socket, {
      ...this.context,
      v1SessionClosed: (closed) => { this.sessions.delete(closed) }
    })
    this.sessions.add(session)
  }

  /** Stops accepting and closes every v1 connection (WebSocket ones with 1001). */
  async close (): Promise<void> {
    this.keepAlive.stop()
    const closed = new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
    for (const session of this.sessions) session.close()
    for (const session of this.webSockets) session.close(CloseCode.GOING_AWAY, CloseReason.SHUTDOWN)
    const grace = setTimeout(() => { for (const session of this.sessions) session.socket.destroy() }, 2000)
    await closed
    clearTimeout(grace)
  }
}
