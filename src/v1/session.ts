import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { Lease, RedisBus } from '../cluster/redis-bus.js'
import type { Channel } from '../hub/channel.js'
import type { Hub, HubMember } from '../hub/hub.js'
import type { Metrics } from '../metrics.js'
import type { ResolvedOptions } from '../options.js'
import { readPrefix, V1_PREFIX_BYTES, V1FrameReader } from './frame.js'
import { addressString, keyStrings, v1Key, type V1KeyMode } from './key.js'
import { decodeMsg, decodeResync } from './msg.js'

/** What a v1 connection needs of the endpoint that owns it. */
export interface V1SessionContext {
  readonly options: ResolvedOptions
  readonly hub: Hub<HubMember>
  readonly counters: Metrics
  readonly log: FastifyBaseLogger
  readonly keyMode: V1KeyMode
  /** The Redis engine in cluster mode: uids are then taken cluster-wide. */
  readonly cluster: RedisBus<HubMember> | null
  v1SessionClosed: (session: V1Session) => void
  /** A member entered its channel, and left it (the app's join and leave events). */
  memberJoined: (member: V1Session) => void
  memberLeft: (member: V1Session) => void
}

/** TCP keepalive idle time, as the reference sets it (SPEC-v1 §1). */
const KEEPALIVE_MS = 5000

/**
 * One v1 TCP connection (SPEC-v1 §6, §7): its first frame (or ResyncMsg)
 * joins a channel after its key is checked, later frames are published to the
 * channel. Like the reference, every problem closes this connection without a
 * word; unlike it, a connection that stays silent or stalls inside a frame for
 * `joinTimeoutMs` is closed too.
 */
export class V1Session implements HubMember {
  uid = ''
  memberIndex = -1
  readonly speaksV1 = true
  catchingUp = false
  joinSequence = 0
  corked = false
  bufferLimit: number
  /** The connection id of its first frame: unique among the v1 members of a channel. */
  cid = -1
  /** The channel entered, kept for the leave event; '' before. */
  channelName = ''
  ip = ''
  readonly origin = null
  private channel: Channel<HubMember> | null = null
  /** Cluster mode: the uid taken cluster-wide while a member. */
  private lease: Lease | null = null
  /** Cluster mode: frames received while the join is checked with the cluster. */
  private early: Buffer[] | null = null
  private readonly reader: V1FrameReader
  private shut = false
  /** Closes a connection that sends no first frame, or stops in the middle of a frame. */
  private stallTimer: NodeJS.Timeout | null = null
  private rateWindowStart = 0
  private rateCount = 0

  constructor (
    readonly socket: Socket,
    private readonly context: V1SessionContext
  ) {
    this.bufferLimit = context.options.maxBufferedBytes
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
    try {
      for (const frame of frames) {
        if (this.shut) return
        if (this.early !== null) {
          if (this.early.length < 256) this.early.push(frame)
          else this.context.counters.droppedRate++
        } else if (this.channel === null) {
          this.join(frame)
        } else {
          this.publish(this.channel, frame)
        }
      }
    } catch (error) {
      // Never reached by any known input; a bug costs one connection, not the process.
      this.context.counters.protocolErrors++
      this.context.log.error({ err: error }, 'mles v1: internal error; closing the connection')
      this.close()
      return
    }
    // Before the join the deadline runs from the connection's start; after it, from the last whole frame.
    if (this.channel === null) return
    if (frames.length > 0) this.clearStallTimer()
    if (this.reader.pendingBytes > 0) this.armStallTimer()
  }

  private join (frame: Buffer): void {
    const { counters, hub, keyMode, log } = this.context
    const frames = decodeResync(frame.subarray(V1_PREFIX_BYTES)) ?? [frame]
    const first = frames[0]
    if (first.length <= V1_PREFIX_BYTES || first[0] !== 0x4d || readPrefix(first).length !== first.length - V1_PREFIX_BYTES) {
      counters.rejectedHeaders++
      this.close()
      return
    }
    const msg = decodeMsg(first.subarray(V1_PREFIX_BYTES))
    if (msg.uid === '' || msg.channel === '') {
      counters.rejectedHeaders++
      log.debug('mles v1: first frame without uid or channel; closing')
      this.close()
      return
    }
    const { key, cid } = readPrefix(first)
    const address = this.socket.remoteAddress ?? ''
    const port = this.socket.remotePort ?? 0
    const accepted = [addressString(address, port)]
    // A v1.1.6 client of a dual-stack server may have hashed the mapped form (SPEC-v1 §5).
    if (/^::ffff:\d/i.test(address)) accepted.push(addressString(address, port, true))
    if (!accepted.some((form) => v1Key(keyStrings(keyMode, form, msg.uid, msg.channel)) === key)) {
      counters.rejectedAuth++
      log.debug({ uid: msg.uid, channel: msg.channel }, 'mles v1: key mismatch; closing')
      this.close()
      return
    }
    const existing = hub.channel(msg.channel)
    if (existing !== undefined && existing.members.some((member) => member.speaksV1 && (member as V1Session).cid === cid && member.isOpen())) {
      counters.rejectedDuplicates++
      log.debug({ uid: msg.uid, channel: msg.channel, cid }, 'mles v1: duplicate CID; closing')
      this.close()
      return
    }
    this.uid = msg.uid
    this.cid = cid
    const cluster = this.context.cluster
    if (cluster === null) {
      this.enter(msg.channel, msg.message, frames)
      return
    }
    this.early = []
    cluster.admit(msg.channel, msg.uid, (lease) => {
      const early = this.early ?? []
      this.early = null
      if (lease === null) {
        counters.rejectedDuplicates++
        log.debug({ uid: msg.uid, channel: msg.channel }, 'mles v1: uid already on the channel; closing')
        this.close()
        return
      }
      if (this.shut) {
        cluster.release(lease)
        return
      }
      this.lease = lease
      this.enter(msg.channel, msg.message, frames)
      for (const frame of early) {
        if (this.channel === null) break
        this.publish(this.channel, frame)
      }
    }).catch((error: unknown) => {
      counters.protocolErrors++
      log.error({ err: error }, 'mles v1: internal error while joining; closing the connection')
      this.close()
    })
  }

  private enter (channelName: string, message: Uint8Array, frames: Buffer[]): void {
    const { counters, hub, log } = this.context
    const first = frames[0]
    const storedJoinFrame = Buffer.from(JSON.stringify({ uid: this.uid, channel: channelName }))
    const channel = hub.join(this, channelName, storedJoinFrame, first)
    if (channel === null) {
      counters.rejectedDuplicates++
      log.debug({ uid: this.uid, channel: channelName }, 'mles v1: uid already on the channel; closing')
      this.close()
      return
    }
    this.channel = channel
    this.channelName = channelName
    const address = this.socket.remoteAddress ?? ''
    this.ip = /^::ffff:\d/i.test(address) ? address.slice(7) : address
    this.clearStallTimer()
    log.debug({ uid: this.uid, channel: channelName, resync: frames.length > 1 }, 'mles v1: joined')
    this.context.memberJoined(this)
    // A first Msg with a message says something too; a resync's other frames follow it.
    if (message.length > 0) hub.publish(channel, message, true, this, null)
    for (let i = 1; i < frames.length && this.channel !== null; i++) this.publish(channel, frames[i], false)
  }

  private publish (channel: Channel<HubMember>, frame: Buffer, limited = true): void {
    const { counters, hub, options } = this.context
    counters.totalMessagesReceived++
    if (frame.length - V1_PREFIX_BYTES > options.maxMessageBytes) {
      counters.droppedOversize++
      return
    }
    if (limited && options.messagesPerSecond !== 0) {
      const now = Date.now()
      if (now - this.rateWindowStart >= 1000) {
        this.rateWindowStart = now
        this.rateCount = 0
      }
      if (++this.rateCount > options.messagesPerSecond) {
        counters.droppedRate++
        return
      }
    }
    // Routing follows the joined channel; the frame's own uid and channel are not looked at (SPEC-v1 §7).
    const msg = decodeMsg(frame.subarray(V1_PREFIX_BYTES))
    if (msg.message.length === 0) hub.deliverV1(channel, frame, this)
    else hub.publish(channel, msg.message, true, this, frame)
  }

  dropAsSlowConsumer (): void {
    this.channel = null
    this.context.counters.droppedSlowConsumers++
    this.close()
  }

  /** Leaves the channel and closes the connection, flushing what was queued. */
  close (): void {
    if (this.shut) return
    this.shut = true
    this.clearStallTimer()
    this.leaveChannel()
    this.socket.end()
    // end() waits for the peer; a peer that never reads must not keep the socket.
    setTimeout(() => { this.socket.destroy() }, 2000).unref()
  }

  private closed (): void {
    this.shut = true
    this.clearStallTimer()
    this.leaveChannel()
    this.context.v1SessionClosed(this)
  }

  private leaveChannel (): void {
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

  private armStallTimer (): void {
    if (this.stallTimer !== null) return
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null
      if (this.shut) return
      if (this.channel === null) this.context.counters.droppedJoinTimeout++
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
