import type { Socket } from 'node:net'
import { V1FrameReader } from './frame.js'
import { V1Member, type V1Carrier, type V1MemberContext } from './member.js'

/** What a v1 TCP connection needs of the listener that owns it. */
export interface V1SessionContext extends V1MemberContext {
  v1SessionClosed: (session: V1Session) => void
}

/** TCP keepalive idle time, as the reference sets it (SPEC-v1 §1). */
const KEEPALIVE_MS = 5000

/**
 * One v1 TCP connection (SPEC-v1 §1, §2): cuts its byte stream into frames
 * for the one channel member it carries. Like the reference, every problem
 * closes the connection without a word; unlike it, a connection that stays
 * silent or stalls inside a frame for `joinTimeoutMs` is closed too.
 */
export class V1Session implements V1Carrier {
  readonly member: V1Member
  readonly checksKey = true
  private readonly reader: V1FrameReader
  private shut = false
  /** Closes a connection that sends no first frame, or stops in the middle of a frame. */
  private stallTimer: NodeJS.Timeout | null = null

  constructor (
    readonly socket: Socket,
    private readonly context: V1SessionContext
  ) {
    this.member = new V1Member(this, context)
    this.reader = new V1FrameReader(Math.min(context.options.maxFrameBytes, 0xffffff))
    socket.setNoDelay(true)
    socket.setKeepAlive(true, KEEPALIVE_MS)
    socket.on('data', (chunk: Buffer) => { this.received(chunk) })
    socket.on('close', () => { this.closed() })
    socket.on('error', (error) => {
      this.context.counters.protocolErrors++
      this.context.log.debug({ err: error }, 'mles v1: connection error')
    })
    this.armStallTimer()
  }

  get remoteAddress (): string {
    return this.socket.remoteAddress ?? ''
  }

  get remotePort (): number {
    return this.socket.remotePort ?? 0
  }

  isOpen (): boolean {
    return !this.shut && !this.socket.destroyed
  }

  private received (chunk: Buffer): void {
    if (this.shut) return
    const frames = this.reader.push(chunk)
    if (!Array.isArray(frames)) {
      this.context.counters.protocolErrors++
      this.context.log.debug({ reason: frames }, 'mles v1: bad frame; closing')
      this.close()
      return
    }
    for (const frame of frames) {
      if (this.shut) return
      this.member.receive(frame)
    }
    // Before the join the deadline runs from the connection's start; after it, from the last whole frame.
    if (!this.member.inChannel) return
    if (frames.length > 0) this.clearStallTimer()
    if (this.reader.pendingBytes > 0) this.armStallTimer()
  }

  entered (): void {
    this.clearStallTimer()
  }

  /** The member is done: the connection ends, flushing what was queued. */
  end (): void {
    if (this.shut) return
    this.shut = true
    this.clearStallTimer()
    this.socket.end()
    // end() waits for the peer; a peer that never reads must not keep the socket.
    setTimeout(() => { this.socket.destroy() }, 2000).unref()
  }

  /** Leaves the channel and closes the connection. */
  close (): void {
    this.member.close()
  }

  private closed (): void {
    this.shut = true
    this.clearStallTimer()
    this.member.gone()
    this.context.v1SessionClosed(this)
  }

  private armStallTimer (): void {
    if (this.stallTimer !== null) return
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null
      if (this.shut) return
      if (!this.member.inChannel) this.context.counters.droppedJoinTimeout++
      else this.context.counters.protocolErrors++
      this.context.log.debug('mles v1: no whole frame in time; closing')
      this.close()
    }, this.context.options.joinTimeoutMs)
  }

  private clearStallTimer (): void {
    if (this.stallTimer !== null) {
      clearTimeout(this.stallTimer)
      this.stallTimer = null
    }
  }
}
