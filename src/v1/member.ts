import type { FastifyBaseLogger } from 'fastify'
import type { Lease, RedisBus } from '../cluster/redis-bus.js'
import type { Channel } from '../hub/channel.js'
import type { Hub, HubMember } from '../hub/hub.js'
import type { RecipientSocket } from '../hub/outbox.js'
import type { Metrics } from '../metrics.js'
import type { ResolvedOptions } from '../options.js'
import type { ChannelRefusal } from '../channel-limits.js'
import type { PresentMember } from '../presence.js'
import { readPrefix, V1_PREFIX_BYTES } from './frame.js'
import { addressString, keyStrings, v1Key, type V1KeyMode } from './key.js'
import { decodeMsg, decodeResync } from './msg.js'

/** What a v1 member needs of the endpoint that owns it. */
export interface V1MemberContext {
  readonly options: ResolvedOptions
  readonly hub: Hub<HubMember>
  readonly counters: Metrics
  readonly log: FastifyBaseLogger
  readonly keyMode: V1KeyMode
  /** The Redis engine in cluster mode: uids are then taken cluster-wide. */
  readonly cluster: RedisBus<HubMember> | null
  /** Why a join from `ip` may not create channel `name` now (`maxChannels`, `perIpChannelLimit`); null when it may. */
  channelRefusal: (name: string, ip: string) => ChannelRefusal | null
  /** A member entered its channel, and left it (the app's join and leave events). */
  memberJoined: (member: PresentMember) => void
  memberLeft: (member: PresentMember) => void
}

/** Why a member's carrier is ended: its join was refused, or the member was dropped. */
export type V1EndReason = 'bad first frame' | 'key mismatch' | 'duplicate' | 'slow consumer' | 'too many channels' | 'channel rate' | 'internal error' | 'closed'

/**
 * What carries a v1 member's frames: a v1 TCP connection (V1Session), or
 * one channel of a CBOR WebSocket connection (V1WebSocketSession).
 */
export interface V1Carrier {
  /** Where the hub writes the member's frames: whole v1 frames, prefix included. */
  readonly socket: RecipientSocket
  /** The client's address and port as the server sees them (the key's address in address mode). */
  readonly remoteAddress: string
  readonly remotePort: number
  /** Whether the first frame's key is checked (a TCP client's is; a WebSocket client's prefix is made here). */
  readonly checksKey: boolean
  isOpen: () => boolean
  /** The member entered its channel. */
  entered: () => void
  /** The member is done (refused, dropped or closed): end what carries it. */
  end: (reason: V1EndReason) => void
}

/**
 * A v1 client's membership of one channel (SPEC-v1 §6, §7), whatever carries
 * its frames: its first frame (or ResyncMsg) joins the channel after its key
 * is checked, later frames are published to it. Like the reference, every
 * problem ends the carrier; nothing is sent back.
 */
export class V1Member implements HubMember {
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
  readonly socket: RecipientSocket
  private channel: Channel<HubMember> | null = null
  /** Cluster mode: the uid taken cluster-wide while a member. */
  private lease: Lease | null = null
  /** Cluster mode: frames received while the join is checked with the cluster. */
  private early: Buffer[] | null = null
  private shut = false
  private rateWindowStart = 0
  private rateCount = 0

  constructor (private readonly carrier: V1Carrier, private readonly context: V1MemberContext) {
    this.socket = carrier.socket
    this.bufferLimit = context.options.maxBufferedBytes
  }

  isOpen (): boolean {
    return !this.shut && this.carrier.isOpen()
  }

  /** In its channel. */
  get inChannel (): boolean {
    return this.channel !== null
  }

  /** One whole frame from the client: the first joins, the others are published. */
  receive (frame: Buffer): void {
    if (this.shut) return
    try {
      if (this.early !== null) {
        if (this.early.length < 256) this.early.push(frame)
        else this.context.counters.droppedRate++
      } else if (this.channel === null) {
        this.join(frame)
      } else {
        this.publish(this.channel, frame)
      }
    } catch (error) {
      // Never reached by any known input; a bug costs one connection, not the process.
      this.context.counters.protocolErrors++
      this.context.log.error({ err: error }, 'mles v1: internal error; closing the connection')
      this.close('internal error')
    }
  }

  private join (frame: Buffer): void {
    const { counters, hub, keyMode, log } = this.context
    const frames = decodeResync(frame.subarray(V1_PREFIX_BYTES)) ?? [frame]
    const first = frames[0]
    if (first.length <= V1_PREFIX_BYTES || first[0] !== 0x4d || readPrefix(first).length !== first.length - V1_PREFIX_BYTES) {
      counters.rejectedHeaders++
      this.close('bad first frame')
      return
    }
    const msg = decodeMsg(first.subarray(V1_PREFIX_BYTES))
    if (msg.uid === '' || msg.channel === '') {
      counters.rejectedHeaders++
      log.debug('mles v1: first frame without uid or channel; closing')
      this.close('bad first frame')
      return
    }
    const { key, cid } = readPrefix(first)
    const address = this.carrier.remoteAddress
    const port = this.carrier.remotePort
    if (this.carrier.checksKey) {
      const accepted = [addressString(address, port)]
      // A v1.1.6 client of a dual-stack server may have hashed the mapped form (SPEC-v1 §5).
      if (/^::ffff:\d/i.test(address)) accepted.push(addressString(address, port, true))
      if (!accepted.some((form) => v1Key(keyStrings(keyMode, form, msg.uid, msg.channel)) === key)) {
        counters.rejectedAuth++
        log.debug({ uid: msg.uid, channel: msg.channel }, 'mles v1: key mismatch; closing')
        this.close('key mismatch')
        return
      }
    }
    const existing = hub.channel(msg.channel)
    if (existing !== undefined && existing.members.some((member) => member.speaksV1 && (member as V1Member).cid === cid && member.isOpen())) {
      counters.rejectedDuplicates++
      log.debug({ uid: msg.uid, channel: msg.channel, cid }, 'mles v1: duplicate CID; closing')
      this.close('duplicate')
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
        this.close('duplicate')
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
      this.close('internal error')
    })
  }

  private enter (channelName: string, message: Uint8Array, frames: Buffer[]): void {
    const { counters, hub, log } = this.context
    const first = frames[0]
    const refusal = this.context.channelRefusal(channelName, this.carrier.remoteAddress)
    if (refusal !== null) {
      log.debug({ uid: this.uid, channel: channelName, refusal }, 'mles v1: join would create a channel past a limit; closing')
      this.close(refusal)
      return
    }
    const storedJoinFrame = Buffer.from(JSON.stringify({ uid: this.uid, channel: channelName }))
    const channel = hub.join(this, channelName, storedJoinFrame, first)
    if (channel === null) {
      counters.rejectedDuplicates++
      log.debug({ uid: this.uid, channel: channelName }, 'mles v1: uid already on the channel; closing')
      this.close('duplicate')
      return
    }
    this.channel = channel
    this.channelName = channelName
    const address = this.carrier.remoteAddress
    this.ip = /^::ffff:\d/i.test(address) ? address.slice(7) : address
    this.carrier.entered()
    log.debug({ uid: this.uid, channel: channelName, resync: frames.length > 1 }, 'mles v1: joined')
    this.context.memberJoined(this)
    // A first Msg with a message says something too (v1 members had it, verbatim, as the join); a resync's other frames follow it.
    if (message.length > 0) hub.publish(channel, message, true, this, false)
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
    this.close('slow consumer')
  }

  /** Leaves the channel and ends the carrier. */
  close (reason: V1EndReason = 'closed'): void {
    if (this.shut) return
    this.shut = true
    this.leave()
    this.carrier.end(reason)
  }

  /** The carrier is gone: leave the channel (nothing more to end). */
  gone (): void {
    this.shut = true
    this.leave()
  }

  private leave (): void {
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
}
