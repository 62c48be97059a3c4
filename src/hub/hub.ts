import { HistoryBudget, type HistoryReclaimer } from '../history/budget.js'
import { HistoryRing } from '../history/ring.js'
import type { HistoryStore } from '../history/store.js'
import type { Metrics } from '../metrics.js'
import { encodeFrame, framePayload, isBinaryFrame } from '../protocol/frame.js'
import { Channel, type ChannelMember, type MlesFrame, type MlesFrameListener } from './channel.js'
import type { Outbox, Recipient } from './outbox.js'

/** What the hub needs of a member connection. */
export interface HubMember extends ChannelMember, Recipient {
  /** Called after the hub refused a write for the member's buffer bound and removed it from its channel. */
  dropAsSlowConsumer: () => void
}

/**
 * What the hub needs of a cluster engine (option `redis`): every frame
 * published here goes to it, and every frame of a channel with local interest
 * comes back from it — the local ones too, in the cluster-wide order — through
 * `Hub.replicated`.
 */
export interface Replication {
  /**
   * Sends a frame published on this node to every node. `sequence` is this
   * hub's number for it (0 if the channel is not held here), handed back with its echo or to
   * `Hub.settleLocal` if it could not be sent.
   */
  publish: (channel: string, payload: Uint8Array, isBinary: boolean, uid: string | null, join: boolean, sequence: number) => void
  /** The channel has no members and no subscribers left here. */
  channelUnused: (channel: string) => void
}

/** How frames look to v1 members (the v1 bridge, option `v1`). */
export interface V1Translator {
  /** A v1 frame: a `Msg` from `uid` on `channel` carrying `message` (empty for a join). */
  frame: (channel: string, uid: string, message: Uint8Array) => Buffer
}

const NO_MESSAGE = new Uint8Array(0)

/** Told when channels gain members and lose their last one (the v1 peer links). */
export interface HubObserver {
  joined: (channel: string, uid: string) => void
  left: (channel: string) => void
}

export interface HubLimits {
  historyLimit: number
  historyMaxBytes: number
  /** 0 = no bound over all channels. */
  historyTotalBytes: number
  channelIdleMs: number
  maxBufferedBytes: number
  /** 0 = no limit. */
  maxChannels: number
}

/**
 * Eviction for the budget empties the history a sixteenth below its bound, so
 * that a full budget is scanned once per that many bytes, not at every frame.
 */
const BUDGET_SLACK = 1 / 16
/** At `maxChannels`, this share of the channels without members goes at once, so the scan is not made at every new channel. */
const RECYCLED_SHARE = 1 / 100

const byActivity = (a: Channel<HubMember>, b: Channel<HubMember>): number => a.lastActivity - b.lastActivity

/** Channels, membership and fan-out (SPEC §2, §4, §5): who gets which frame. */
export class Hub<M extends HubMember> implements HistoryReclaimer {
  private readonly channels = new Map<string, Channel<M>>()
  /** The history of every channel together (option `historyTotalBytes`). */
  readonly budget: HistoryBudget

  constructor (
    private readonly limits: HubLimits,
    private readonly outbox: Outbox,
    private readonly metrics: Metrics,
    private readonly onListenerError: (error: unknown) => void,
    /** Durable history of a single node (`historyDir`); null keeps history in memory only. */
    private readonly store: HistoryStore | null = null,
    /** The cluster engine; null on a single node. */
    private readonly replication: Replication | null = null,
    /** The v1 bridge's encoding; null without v1 members. */
    private readonly v1: V1Translator | null = null
  ) {
    this.budget = new HistoryBudget(limits.historyTotalBytes === 0 ? Infinity : limits.historyTotalBytes, this)
  }

  /** Told of joins and empty channels; set by the v1 peer links. */
  observer: HubObserver | null = null

  /** Told how many frames of history the budget (or `maxChannels`) has just evicted. */
  onHistoryEvicted: ((frames: number, channels: number) => void) | null = null

  /** Numbers the frames published on this node, in cluster mode. */
  private sequence = 0

  get channelCount (): number {
    return this.channels.size
  }

  channel (name: string): Channel<M> | undefined {
    return this.channels.get(name)
  }

  allChannels (): IterableIterator<Channel<M>> {
    return this.channels.values()
  }

  /** The channel `name`, created (with its stored history, if any) if new. */
  channelOrCreate (name: string): Channel<M> {
    let channel = this.channels.get(name)
    if (channel === undefined) {
      const history = new HistoryRing(this.limits.historyLimit, this.limits.historyMaxBytes, this.budget)
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
   * then stores its join frame, which current members do not receive. In
   * cluster mode the replay comes once the join frame has its place in the
   * cluster order.
   * Returns null when an open connection already holds the member's uid there.
   */
  join (member: M, name: string, storedJoinFrame: Buffer, v1JoinFrame: Buffer | null = null): Channel<M> | null {
    const channel = this.channelOrCreate(name)
    const holder = channel.memberByUid(member.uid)
    if (holder !== undefined) {
      if (holder.isOpen()) return null
      // A connection already closing must not lock its uid out until its close handshake ends.
      channel.remove(holder)
    }
    channel.add(member)

    // v1 forwards joins to the members there (SPEC-v1 §6): v1 members hear of every join, in their form.
    if (this.v1 !== null && channel.v1Members > (member.speaksV1 ? 1 : 0)) {
      this.deliverV1(channel, v1JoinFrame ?? this.v1.frame(name, member.uid, NO_MESSAGE), member)
    }

    if (this.replication !== null) {
      // The replay waits until the join frame has its place in the cluster
      // order: then the history here holds exactly the frames before it, from
      // every node, and everything after it reaches the joiner in that order.
      const sequence = ++this.sequence
      channel.lastLocalSequence = sequence
      channel.awaitJoin(member, sequence)
      this.replication.publish(name, storedJoinFrame, false, member.uid, true, sequence)
      channel.lastActivity = Date.now()
      if (channel.listeners !== null) this.notify(channel, encodeFrame(storedJoinFrame, false), member.uid, true)
      return channel
    }

    this.replay(member, channel)
    const history = channel.history
    const wire = history.append(storedJoinFrame, false, member.uid, true)
    if (this.store !== null && history.lastAppendKept) this.store.append(name, wire, history.size)
    channel.lastActivity = Date.now()
    if (channel.listeners !== null) this.notify(channel, wire, member.uid, true)
    if (this.observer !== null) this.observer.joined(name, member.uid)
    return channel
  }

  /** Sends the history to a member, oldest first, in its protocol's form. */
  private replay (member: M, channel: Channel<M>): void {
    const history = channel.history
    if (member.speaksV1) this.replayAsV1(member, channel)
    else history.forEachRun((run) => { this.outbox.writeUnbounded(member, run) })
    member.bufferLimit = this.limits.maxBufferedBytes + history.bytes
    this.metrics.totalMessagesSent += history.size
  }

  /** Adds a member that takes no replay and makes no join (a v1 peer link). */
  attach (member: M, name: string): Channel<M> {
    const channel = this.channelOrCreate(name)
    channel.add(member)
    member.bufferLimit = this.limits.maxBufferedBytes
    return channel
  }

  /**
   * A join made elsewhere (a member of a v1 peer): stored as a join frame, and
   * forwarded as `v1Frame` to the v1 members but `from`, as v1 does.
   */
  recordJoin (channel: Channel<M>, uid: string, v1Frame: Buffer, from: M | null): void {
    const wire = channel.history.append(Buffer.from(JSON.stringify({ uid, channel: channel.name })), false, uid, true)
    if (this.store !== null && channel.history.lastAppendKept) this.store.append(channel.name, wire, channel.history.size)
    if (channel.v1Members > 0) this.deliverV1(channel, v1Frame, from)
    channel.lastActivity = Date.now()
    if (channel.listeners !== null) this.notify(channel, wire, uid, true)
  }

  leave (member: M, channel: Channel<M>): void {
    if (!channel.remove(member)) return
    channel.lastActivity = Date.now()
    if (this.observer !== null) this.observer.left(channel.name)
    if (!channel.isUnused()) return
    if (this.replication !== null) this.replication.channelUnused(channel.name)
    else if (channel.history.size === 0) this.channels.delete(channel.name)
  }

  private dropSlow (channel: Channel<M>, member: M): void {
    channel.remove(member)
    member.dropAsSlowConsumer()
    if (this.observer !== null) this.observer.left(channel.name)
    if (this.replication !== null && channel.isUnused()) this.replication.channelUnused(channel.name)
  }

  /** Forgets channel `name` here (cluster mode: its history lives on in the cluster). */
  drop (name: string): void {
    const channel = this.channels.get(name)
    if (channel === undefined) return
    this.channels.delete(name)
    // What it held no longer counts against the budget.
    channel.history.trimTo(0)
  }

  /**
   * Stores a frame in the history, encoded once, and sends those same bytes to
   * every open member but `from`. A member whose buffer is full is removed and
   * dropped, never waited for. Iterates backwards so that removal (swap with
   * last) is safe.
   */
  /**
   * `v1Frame`: what v1 members get (made from the payload when null); false
   * when they already have it (a v1 client's first frame, forwarded verbatim
   * with its join, carried this message).
   */
  publish (channel: Channel<M>, payload: Uint8Array, isBinary: boolean, from: M | null, v1Frame: Buffer | null | false = null, sender: string | null = from === null ? null : from.uid): void {
    let wire: Buffer
    if (this.replication === null) {
      wire = channel.history.append(payload, isBinary, sender)
      if (this.store !== null && channel.history.lastAppendKept) this.store.append(channel.name, wire, channel.history.size)
    } else {
      // Into the history when it comes back from the cluster, in cluster order.
      wire = encodeFrame(payload, isBinary)
      const sequence = ++this.sequence
      channel.lastLocalSequence = sequence
      this.replication.publish(channel.name, payload, isBinary, from === null ? null : from.uid, false, sequence)
    }
    const members = channel.members
    let delivered = 0
    for (let i = members.length - 1; i >= 0; i--) {
      const member = members[i]
      if (member === from || member.catchingUp || !member.isOpen()) continue
      if (member.speaksV1) {
        if (v1Frame === false) continue
        v1Frame ??= (this.v1 as V1Translator).frame(channel.name, sender ?? '', payload)
      }
      if (this.outbox.write(member, member.speaksV1 ? v1Frame as Buffer : wire)) {
        delivered++
      } else {
        this.dropSlow(channel, member)
      }
    }
    this.metrics.totalMessagesSent += delivered
    channel.lastActivity = Date.now()
    if (channel.listeners !== null) this.notify(channel, wire, sender, false)
  }

  /** Sends a v1 frame to the channel's other v1 members only (a v1 frame with an empty message: nothing for v2 clients). */
  deliverV1 (channel: Channel<M>, v1Frame: Buffer, from: M | null): void {
    const members = channel.members
    for (let i = members.length - 1; i >= 0; i--) {
      const member = members[i]
      if (!member.speaksV1 || member === from || !member.isOpen()) continue
      if (this.outbox.write(member, v1Frame)) this.metrics.totalMessagesSent++
      else this.dropSlow(channel, member)
    }
  }

  private replayAsV1 (member: M, channel: Channel<M>): void {
    for (const frame of this.historyAsV1(channel)) this.outbox.writeUnbounded(member, frame)
  }

  /** The history as v1 frames, oldest first: each a `Msg` from its sender, joins with an empty message. */
  historyAsV1 (channel: Channel<M>): Buffer[] {
    const history = channel.history
    const v1 = this.v1 as V1Translator
    const frames: Buffer[] = []
    for (let i = 0; i < history.size; i++) {
      const join = history.isJoinAt(i)
      const payload = framePayload(history.at(i))
      const uid = history.senderAt(i) ?? (join ? uidOfJoinFrame(payload) : '')
      frames.push(v1.frame(channel.name, uid, join ? NO_MESSAGE : payload))
    }
    return frames
  }

  /** Publishes a server-originated frame on channel `name`, creating the channel if needed. */
  publishTo (name: string, payload: Uint8Array, isBinary: boolean): void {
    const channel = this.channels.get(name)
    if (channel === undefined && this.replication !== null) {
      // Nobody here listens: only the cluster needs it.
      this.replication.publish(name, payload, isBinary, null, false, 0)
      return
    }
    this.publish(channel ?? this.channelOrCreate(name), payload, isBinary, null)
  }

  /**
   * A frame of `channel` in cluster order (cluster mode): stored in the
   * history, and delivered to the members that have not had it yet — all of
   * them for another node's data frame; for one of ours, data or join frame,
   * only the members still catching up (the others got it when it was
   * published, or were there before the join).
   */
  replicated (channel: Channel<M>, payload: Buffer, isBinary: boolean, uid: string | null, join: boolean, local: boolean, sequence: number): void {
    if (local && join) this.joinPlaced(channel, sequence)
    const wire = channel.history.append(payload, isBinary, uid, join)
    channel.lastActivity = Date.now()
    if (local) {
      this.settle(channel, wire, payload, uid, join, sequence)
      return
    }
    // A join reaches no WebSocket member live, but v1 members hear of it (SPEC-v1 §6).
    if (!join || channel.v1Members > 0) this.deliver(channel, wire, payload, uid, join, false)
    if (channel.listeners !== null) this.notify(channel, wire, uid, join)
  }

  /**
   * One of our frames that could not go through the cluster (engine down):
   * kept in this node's history so local joiners still see it, and delivered
   * to whoever was waiting for it.
   */
  settleLocal (name: string, payload: Uint8Array, isBinary: boolean, uid: string | null, join: boolean, sequence: number): void {
    const channel = this.channels.get(name)
    if (channel === undefined) return
    if (join && sequence !== 0) this.joinPlaced(channel, sequence)
    const wire = channel.history.append(payload, isBinary, uid, join)
    if (sequence !== 0) this.settle(channel, wire, payload, uid, join, sequence)
  }

  /**
   * A join frame of this node has its place in the cluster order, and the
   * history holds what came before it: the joiner gets it as its replay. It
   * stays catching up (and so in cluster order) while frames of this node
   * published after the join are in flight.
   */
  private joinPlaced (channel: Channel<M>, sequence: number): void {
    const member = channel.joinPlaced(sequence)
    if (member === undefined || !member.isOpen()) return
    this.replay(member, channel)
  }

  private settle (channel: Channel<M>, wire: Buffer, payload: Uint8Array, uid: string | null, join: boolean, sequence: number): void {
    if (sequence > channel.settledSequence) channel.settledSequence = sequence
    if (channel.catchingUp === 0) return
    this.deliver(channel, wire, payload, uid, join, true)
    if (channel.settledSequence >= channel.lastLocalSequence) channel.endCatchUp()
  }

  /**
   * Writes a frame to the open members (only those catching up, if
   * `catchingUpOnly`) but the one with `uid` and those whose own join is not
   * placed yet: `wire` to WebSocket members, its v1 form to v1 members. A
   * join goes to v1 members only (SPEC §2).
   */
  private deliver (channel: Channel<M>, wire: Buffer, payload: Uint8Array, uid: string | null, join: boolean, catchingUpOnly: boolean): void {
    const members = channel.members
    let delivered = 0
    let v1Frame: Buffer | null = null
    for (let i = members.length - 1; i >= 0; i--) {
      const member = members[i]
      if ((catchingUpOnly && !member.catchingUp) || member.joinSequence !== 0 || member.uid === uid || !member.isOpen()) continue
      if (join && !member.speaksV1) continue
      if (member.speaksV1) v1Frame ??= (this.v1 as V1Translator).frame(channel.name, uid ?? '', join ? NO_MESSAGE : payload)
      if (this.outbox.write(member, member.speaksV1 ? v1Frame as Buffer : wire)) {
        delivered++
      } else {
        this.dropSlow(channel, member)
      }
    }
    this.metrics.totalMessagesSent += delivered
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
      if (this.replication !== null && channel.isUnused() && this.channels.get(channel.name) === channel) this.replication.channelUnused(channel.name)
    }
  }

  /**
   * Makes room in the budget for `needed` more bytes (HistoryReclaimer):
   * first the whole history of channels without members or subscribers,
   * least recently active first; then the oldest frames of the channels in
   * use, least recently active first, none below its share of the budget
   * (the bound divided by the channels in use), so a flood in some channels
   * cannot empty the others. Only the oldest frames go: every replay stays a
   * gap-free tail of what the members saw.
   */
  reclaim (needed: number, asking: object): void {
    const budget = this.budget
    const slack = Math.floor(budget.limit * BUDGET_SLACK)
    const target = Math.max(0, budget.limit - needed - slack)
    const idle: Array<Channel<M>> = []
    const live: Array<Channel<M>> = []
    for (const channel of this.channels.values()) {
      if (channel.history.bytes === 0) continue
      // The channel being written to is never forgotten under its writer, only trimmed.
      if (channel.isUnused() && channel.history !== asking) idle.push(channel)
      else live.push(channel)
    }
    let frames = 0
    let channels = 0
    idle.sort(byActivity)
    for (let i = 0; i < idle.length && budget.held > target; i++) {
      frames += this.forgetHistory(idle[i])
      channels++
    }
    if (budget.held > target && live.length > 0) {
      live.sort(byActivity)
      const share = Math.floor((budget.limit - slack) / live.length)
      for (let i = 0; i < live.length && budget.held > target; i++) {
        const history = live[i].history
        const floor = history === asking ? Math.max(0, share - needed) : share
        const evicted = history.trimTo(Math.max(floor, history.bytes - (budget.held - target)))
        if (evicted > 0) {
          frames += evicted
          channels++
        }
      }
    }
    this.historyEvicted(frames, channels)
  }

  notKept (): void {
    this.historyEvicted(1, 1)
  }

  /**
   * Whether a new channel may be created (option `maxChannels`): at the
   * bound, the least recently active channels without members or
   * subscribers are forgotten to make room (a few at once); false when every
   * channel is in use.
   */
  roomForChannel (): boolean {
    const max = this.limits.maxChannels
    if (max === 0 || this.channels.size < max) return true
    const idle: Array<Channel<M>> = []
    for (const channel of this.channels.values()) {
      if (channel.isUnused()) idle.push(channel)
    }
    if (idle.length === 0) return false
    idle.sort(byActivity)
    const batch = Math.min(idle.length, Math.max(1, Math.floor(max * RECYCLED_SHARE)))
    let frames = 0
    for (let i = 0; i < batch; i++) frames += this.forgetHistory(idle[i])
    this.historyEvicted(frames, batch)
    return this.channels.size < max
  }

  /** Empties the history of an unused channel and forgets it (on a single node; the cluster engine drops its own). */
  private forgetHistory (channel: Channel<M>): number {
    const frames = channel.history.trimTo(0)
    if (this.replication === null) {
      this.channels.delete(channel.name)
      if (this.store !== null) this.store.forget(channel.name)
    }
    return frames
  }

  private historyEvicted (frames: number, channels: number): void {
    if (frames === 0) return
    this.metrics.historyEvictedFrames += frames
    if (this.onHistoryEvicted !== null) this.onHistoryEvicted(frames, channels)
  }

  /** Forgets channels with no members and no subscribers, inactive for `channelIdleMs`. */
  expireIdle (now: number): void {
    // In cluster mode a channel goes as soon as nobody here uses it (its history stays in Redis).
    if (this.replication !== null) return
    for (const channel of this.channels.values()) {
      if (channel.isUnused() && now - channel.lastActivity >= this.limits.channelIdleMs) this.forgetHistory(channel)
    }
  }

  clear (): void {
    this.channels.clear()
    this.budget.held = 0
  }

  private notify (channel: Channel<M>, wire: Buffer, uid: string | null, join: boolean): void {
    const listeners = channel.listeners as MlesFrameListener[]
    const frame: MlesFrame = { channel: channel.name, uid, data: framePayload(wire), isBinary: isBinaryFrame(wire), join }
    for (let i = 0; i < listeners.length; i++) {
      try {
        const done = listeners[i](frame)
        if (done instanceof Promise) done.catch(this.onListenerError)
      } catch (error) {
        this.onListenerError(error)
      }
    }
  }
}

/** The uid of a stored join frame (JSON text), or '' (history loaded from disk keeps no senders). */
function uidOfJoinFrame (payload: Buffer): string {
  try {
    const header = JSON.parse(payload.toString('utf8')) as { uid?: unknown }
    return typeof header.uid === 'string' ? header.uid : ''
  } catch {
    return ''
  }
}
