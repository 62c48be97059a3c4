import { HistoryRing } from '../history/ring.js'
import type { HistoryStore } from '../history/store.js'
import type { Metrics } from '../metrics.js'
import { framePayload, isBinaryFrame } from '../protocol/frame.js'
import { Channel, type ChannelMember, type MlesFrame, type MlesFrameListener } from './channel.js'
import type { Outbox, Recipient } from './outbox.js'

/** What the hub needs of a member connection. */
export interface HubMember extends ChannelMember, Recipient {
  /** Called after the hub refused a write for the member's buffer bound and removed it from its channel. */
  dropAsSlowConsumer: () => void
}

export interface HubLimits {
  historyLimit: number
  historyMaxBytes: number
  channelIdleMs: number
  maxBufferedBytes: number
}

/** Channels, membership and fan-out (SPEC §2, §4, §5): who gets which frame. */
export class Hub<M extends HubMember> {
  private readonly channels = new Map<string, Channel<M>>()

  constructor (
    private readonly limits: HubLimits,
    private readonly outbox: Outbox,
    private readonly metrics: Metrics,
    private readonly onListenerError: (error: unknown) => void,
    /** Durable history of a single node (`historyDir`); null keeps history in memory only. */
    private readonly store: HistoryStore | null = null
  ) {}

  get channelCount (): number {
    return this.channels.size
  }

  channel (name: string): Channel<M> | undefined {
    return this.channels.get(name)
  }

  allChannels (): IterableIterator<Channel<M>> {
    return this.channels.values()
  }

  private channelOrCreate (name: string): Channel<M> {
    let channel = this.channels.get(name)
    if (channel === undefined) {
      const history = new HistoryRing(this.limits.historyLimit, this.limits.historyMaxBytes)
      if (this.store !== null) {
        for (const wire of this.store.load(name)) history.append(framePayload(wire), isBinaryFrame(wire))
      }
      channel = new Channel<M>(name, history, Date.now())
      this.channels.set(name, channel)
    }
    return channel
  }

  /**
   * Adds `member` to channel `name`: replays the history to it, oldest first,
   * then stores its join frame, which current members do not receive.
   * Returns null when an open connection already holds the member's uid there.
   */
  join (member: M, name: string, storedJoinFrame: Buffer): Channel<M> | null {
    const channel = this.channelOrCreate(name)
    const holder = channel.memberByUid(member.uid)
    if (holder !== undefined) {
      if (holder.isOpen()) return null
      // A connection already closing must not lock its uid out until its close handshake ends.
      channel.remove(holder)
    }
    channel.add(member)

    const history = channel.history
    history.forEachRun((run) => { this.outbox.writeUnbounded(member, run) })
    member.bufferLimit = this.limits.maxBufferedBytes + history.bytes
    this.metrics.totalMessagesSent += history.size

    const wire = history.append(storedJoinFrame, false)
    if (this.store !== null && history.lastAppendKept) this.store.append(name, wire, history.size)
    channel.lastActivity = Date.now()
    if (channel.listeners !== null) this.notify(channel, wire, member.uid, true)
    return channel
  }

  leave (member: M, channel: Channel<M>): void {
    if (!channel.remove(member)) return
    channel.lastActivity = Date.now()
    if (channel.isUnused() && channel.history.size === 0) this.channels.delete(channel.name)
  }

  /**
   * Stores a frame in the history, encoded once, and sends those same bytes to
   * every open member but `from`. A member whose buffer is full is removed and
   * dropped, never waited for. Iterates backwards so that removal (swap with
   * last) is safe.
   */
  publish (channel: Channel<M>, payload: Uint8Array, isBinary: boolean, from: M | null): void {
    const wire = channel.history.append(payload, isBinary)
    if (this.store !== null && channel.history.lastAppendKept) this.store.append(channel.name, wire, channel.history.size)
    const members = channel.members
    let delivered = 0
    for (let i = members.length - 1; i >= 0; i--) {
      const member = members[i]
      if (member === from || !member.isOpen()) continue
      if (this.outbox.write(member, wire)) {
        delivered++
      } else {
        channel.remove(member)
        member.dropAsSlowConsumer()
      }
    }
    this.metrics.totalMessagesSent += delivered
    channel.lastActivity = Date.now()
    if (channel.listeners !== null) this.notify(channel, wire, from === null ? null : from.uid, false)
  }

  /** Publishes a server-originated frame on channel `name`, creating the channel if needed. */
  publishTo (name: string, payload: Uint8Array, isBinary: boolean): void {
    this.publish(this.channelOrCreate(name), payload, isBinary, null)
  }

  /** Calls `listener` with every later frame of channel `name`; returns the unsubscribe function. */
  subscribe (name: string, listener: MlesFrameListener): () => void {
    const channel = this.channelOrCreate(name)
    // Copy on write: a listener may unsubscribe while frames are being delivered.
    channel.listeners = channel.listeners === null ? [listener] : [...channel.listeners, listener]
    let subscribed = true
    return () => {
      if (!subscribed) return
      subscribed = false
      const remaining = (channel.listeners ?? []).filter((candidate) => candidate !== listener)
      channel.listeners = remaining.length === 0 ? null : remaining
      channel.lastActivity = Date.now()
    }
  }

  /** Forgets channels with no members and no subscribers, inactive for `channelIdleMs`. */
  expireIdle (now: number): void {
    for (const channel of this.channels.values()) {
      if (channel.isUnused() && now - channel.lastActivity >= this.limits.channelIdleMs) {
        this.channels.delete(channel.name)
        if (this.store !== null) this.store.forget(channel.name)
      }
    }
  }

  clear (): void {
    this.channels.clear()
  }

  private notify (channel: Channel<M>, wire: Buffer, uid: string | null, join: boolean): void {
    const listeners = channel.listeners as MlesFrameListener[]
    const frame: MlesFrame = { channel: channel.name, uid, data: framePayload(wire), isBinary: isBinaryFrame(wire), join }
    for (let i = 0; i < listeners.length; i++) {
      try {
        listeners[i](frame)
      } catch (error) {
        this.onListenerError(error)
      }
    }
  }
}
