import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { V1Translator } from '../hub/hub.js'
import { limiterKey, type PerIpLimiter } from '../ip-limiter.js'
import type { Metrics } from '../metrics.js'
import { cidOfKey, v1Key, type V1KeyMode } from './key.js'
import { encodeFrame } from './frame.js'
import { encodeMsg } from './msg.js'
import { V1Session, type V1SessionContext } from './session.js'

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

/** The v1 TCP listener (SPEC-v1 §1): accepts connections, applies the per-IP limit, owns the v1 sessions. */
export class V1Listener {
  private readonly server: Server
  private readonly sessions = new Set<V1Session>()

  constructor (
    private readonly context: Omit<V1SessionContext, 'v1SessionClosed'>,
    private readonly limiter: PerIpLimiter,
    private readonly counters: Metrics,
    private readonly log: FastifyBaseLogger
  ) {
    this.server = createServer((socket) => { this.accept(socket) })
  }

  get connections (): number {
    return this.sessions.size
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
    const ip = limiterKey(socket.remoteAddress ?? '')
    if (this.limiter.take(ip, Date.now()) > 0) {
      this.counters.droppedByIp++
      socket.destroy()
      return
    }
    const session = new V1Session(socket, {
      ...this.context,
      v1SessionClosed: (closed) => { this.sessions.delete(closed) }
    })
    this.sessions.add(session)
  }

  /** Stops accepting and closes every v1 connection. */
  async close (): Promise<void> {
    const closed = new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
    for (const session of this.sessions) session.close()
    const grace = setTimeout(() => { for (const session of this.sessions) session.socket.destroy() }, 2000)
    await closed
    clearTimeout(grace)
  }
}
