import { randomUUID } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { Channel } from '../hub/channel.js'
import type { Hub, HubMember, HubObserver } from '../hub/hub.js'
import type { Metrics } from '../metrics.js'
import { framePayload } from '../protocol/frame.js'
import { encodeFrame, V1_MAX_PAYLOAD_BYTES, V1_PREFIX_BYTES, V1FrameReader } from './frame.js'
import { addressString, cidOfKey, keyStrings, v1Key, type V1KeyMode } from './key.js'
import { decodeMsg, encodeMsg, encodeResync } from './msg.js'

/** Where the peer is and how to reach it (option `v1.peer`). */
export interface V1PeerOptions {
  host: string
  port: number
  /** First wait before reconnecting; doubles up to `retryMaxMs`. The reference: 5 s to 600 s. */
  retryMinMs: number
  retryMaxMs: number
}

/**
 * One channel's link to the peer (SPEC-v1 §8): to the peer an ordinary v1
 * client, here a member that gets no replay and makes no join. Frames of local
 * members go up it; frames from the peer are published here as coming from
 * their own uid, and never go back up (the hub skips a frame's sender).
 */
class PeerLink implements HubMember {
  readonly uid = `\u0000v1-peer:${randomUUID()}`
  memberIndex = -1
  readonly speaksV1 = true
  catchingUp = false
  joinSequence = 0
  corked = false
  bufferLimit = 0
  socket: Socket
  private channelRef: Channel<HubMember> | null = null
  private reader = new V1FrameReader()
  private retryMs: number
  private retryTimer: NodeJS.Timeout | null = null
  private connected = false
  private everConnected = false
  private closed = false
  /** Frames of the local history when the link (re)connected: the peer's replay of them is not published again. */
  private known: Set<string> | null = null

  constructor (
    readonly channel: string,
    /** The local member whose join opens the link; its uid goes into the link's first frame. */
    private readonly triggerUid: string,
    private readonly links: V1PeerLinks
  ) {
    this.retryMs = links.options.retryMinMs
    this.socket = this.open()
  }

  isOpen (): boolean {
    return this.connected && !this.socket.destroyed
  }

  private open (): Socket {
    const { host, port } = this.links.options
    const socket = connect({ host, port })
    socket.setNoDelay(true)
    socket.setKeepAlive(true, 5000)
    socket.on('connect', () => { this.onConnect() })
    socket.on('data', (chunk: Buffer) => { this.onData(chunk) })
    socket.on('error', (error) => { this.links.log.debug({ err: error, channel: this.channel }, 'mles v1: peer link error') })
    socket.on('close', () => { this.onClose() })
    return socket
  }

  private onConnect (): void {
    const { hub, keyMode } = this.links
    const reconnect = this.everConnected
    this.connected = true
    this.everConnected = true
    this.retryMs = this.links.options.retryMinMs
    this.reader = new V1FrameReader()
    const local = addressString(this.socket.localAddress ?? '', this.socket.localPort ?? 0)
    const key = v1Key(keyStrings(keyMode, local, this.triggerUid, this.channel))
    const join = encodeMsg({ uid: this.triggerUid, channel: this.channel, message: new Uint8Array(0) })
    const channel = hub.attach(this, this.channel)
    this.channelRef = channel
    this.known = this.historyKeys(channel)
    let payload: Buffer = join
    if (reconnect && channel.history.size > 1) {
      // Back after a break: give the peer our history (SPEC-v1 §8), unless it would not fit a frame.
      const resync = encodeResync(hub.historyAsV1(channel))
      if (resync.length <= V1_MAX_PAYLOAD_BYTES) payload = resync
    }
    this.socket.write(encodeFrame(payload, cidOfKey(key), key))
    this.links.log.info({ channel: this.channel, peer: `${this.links.options.host}:${this.links.options.port}`, resync: payload !== join }, 'mles v1: peer link up')
  }

  private historyKeys (channel: Channel<HubMember>): Set<string> {
    const keys = new Set<string>()
    const history = channel.history
    for (let i = 0; i < history.size; i++) {
      if (history.isJoinAt(i)) continue
      keys.add(`${history.senderAt(i) ?? ''}\u0000${framePayload(history.at(i)).toString('base64')}`)
    }
    return keys
  }

  private onData (chunk: Buffer): void {
    const frames = this.reader.push(chunk)
    if (!Array.isArray(frames)) {
      this.links.counters.protocolErrors++
      this.links.log.warn({ channel: this.channel, reason: frames }, 'mles v1: bad frame from the peer; reconnecting')
      this.socket.destroy()
      return
    }
    const channel = this.channelRef
    if (channel === null) return
    for (const frame of frames) {
      const msg = decodeMsg(frame.subarray(V1_PREFIX_BYTES))
      if (msg.uid === '') continue
      if (msg.message.length === 0) {
        this.links.hub.recordJoin(channel, msg.uid, frame, this)
        continue
      }
      const known = this.known
      if (known !== null && known.delete(`${msg.uid}\u0000${Buffer.from(msg.message).toString('base64')}`)) continue
      this.links.counters.totalMessagesReceived++
      this.links.hub.publish(channel, msg.message, true, this, frame, msg.uid)
    }
  }

  private onClose (): void {
    const wasConnected = this.connected
    this.connected = false
    this.known = null
    if (this.channelRef !== null) {
      this.links.detach(this, this.channelRef)
      this.channelRef = null
    }
    if (this.closed) return
    if (wasConnected) this.links.log.warn({ channel: this.channel }, 'mles v1: peer link lost; reconnecting')
    const delay = this.retryMs
    this.retryMs = Math.min(this.retryMs * 2, this.links.options.retryMaxMs)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (!this.closed) this.socket = this.open()
    }, delay)
    this.retryTimer.unref()
  }

  dropAsSlowConsumer (): void {
    this.socket.destroy()
  }

  close (): void {
    this.closed = true
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.socket.destroy()
  }
}

/** `--v1-peer`: a link to the peer for every channel with local members (SPEC-v1 §8). */
export class V1PeerLinks implements HubObserver {
  private readonly links = new Map<string, PeerLink>()
  private stopped = false

  constructor (
    readonly hub: Hub<HubMember>,
    readonly options: V1PeerOptions,
    readonly keyMode: V1KeyMode,
    readonly counters: Metrics,
    readonly log: FastifyBaseLogger
  ) {
    hub.observer = this
  }

  joined (channel: string, uid: string): void {
    if (this.stopped || this.links.has(channel)) return
    this.links.set(channel, new PeerLink(channel, uid, this))
  }

  left (channel: string): void {
    const link = this.links.get(channel)
    const local = this.hub.channel(channel)
    if (link === undefined) return
    // Only the link itself left: no local member needs the peer any more.
    if (local === undefined || local.members.every((member) => member === link)) {
      this.links.delete(channel)
      link.close()
    }
  }

  detach (link: PeerLink, channel: Channel<HubMember>): void {
    if (channel.remove(link) && channel.isUnused() && channel.history.size === 0) this.hub.drop(channel.name)
  }

  /** How many channels have a link up. */
  get linksUp (): number {
    let up = 0
    for (const link of this.links.values()) if (link.isOpen()) up++
    return up
  }

  close (): void {
    this.stopped = true
    for (const link of this.links.values()) link.close()
    this.links.clear()
  }
}
