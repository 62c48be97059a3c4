import type { AddressInfo, Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { RedisBus } from './cluster/redis-bus.js'
import type { OptionalParts } from './features.js'
import { HistoryRing } from './history/ring.js'
import type { HistoryStore } from './history/store.js'
import type { MlesApi, MlesChannelInfo, MlesHistoryFrame, MlesMemberEventName, MlesMemberListener, MlesPublishOptions } from './api.js'
import type { MlesFrameListener } from './hub/channel.js'
import { Hub, type HubMember } from './hub/hub.js'
import { Outbox } from './hub/outbox.js'
import type { FastifyRequest } from 'fastify'
import { ChannelLimits, type ChannelRefusal } from './channel-limits.js'
import { PerIpLimiter } from './ip-limiter.js'
import { Presence, type PresentMember } from './presence.js'
import { KeepAlive } from './keepalive.js'
import { Metrics, type MlesMetricsSnapshot } from './metrics.js'
import { MlesOptionError, type ResolvedOptions } from './options.js'
import { CloseCode, CloseReason } from './protocol/close.js'
import { framePayload, isBinaryFrame } from './protocol/frame.js'
import { Session, type SessionContext } from './session.js'
import { ThrottledLog } from './throttled-log.js'
import type { V1Listener } from './v1/listener.js'
import type { V1PeerLinks } from './v1/peer.js'

/** How long `close()` waits for clients to answer the closing handshake before cutting them off. */
const SHUTDOWN_GRACE_MS = 2000

function assertChannelName (channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || channel.length === 0 || !/^[\x00-\x7f]*$/.test(channel)) {
    throw new TypeError('fastify-mles: channel must be a non-empty ASCII string')
  }
}

function assertEventName (event: unknown): asserts event is MlesMemberEventName {
  if (event !== 'join' && event !== 'leave') throw new TypeError(`fastify-mles: no event ${JSON.stringify(event)}; the events are 'join' and 'leave'`)
}

/** The durable history of option `historyDir`, opened now: a directory it cannot use fails the registration. */
function openHistoryStore (options: ResolvedOptions, parts: OptionalParts, log: FastifyBaseLogger): HistoryStore | null {
  const dir = options.historyDir
  if (dir === undefined || parts.durableHistory === null) return null
  try {
    return new parts.durableHistory.LmdbHistoryStore({
      dir,
      flushIntervalMs: options.historyFlushMs,
      channelIdleMs: options.channelIdleMs,
      onWriteError: (error, failures) => { log.error({ err: error, failures }, `mles: writing history to ${dir} failed; retrying at every flush`) },
      onRecovered: (failures) => { log.warn({ failures }, `mles: history written to ${dir} again`) }
    })
  } catch (error) {
    throw new MlesOptionError('historyDir', `cannot hold the history at ${JSON.stringify(dir)}: ${(error as Error).message}`)
  }
}

/** One Mles endpoint: owns the hub, the connections, the counters and the timers. */
export class MlesEndpoint implements MlesApi, SessionContext {
  readonly counters = new Metrics()
  /** Refusals, failures and limits reached, logged at most once a minute per kind. */
  readonly notices: ThrottledLog
  readonly hub: Hub<HubMember>
  private readonly channelLimits: ChannelLimits
  /** Upgrades admitted under `maxConnections` whose WebSocket is not made yet: they hold a place. */
  private readonly upgrading = new Set<Socket>()
  private sweepUpgradingAt = 1024
  /** The v1 listener's per-IP limit (WebSocket upgrades are limited by @fastify/rate-limit); null without v1. */
  private readonly v1Limiter: PerIpLimiter | null
  readonly cluster: RedisBus<HubMember> | null
  private readonly presence: Presence
  private readonly v1: V1Listener | null
  private readonly peers: V1PeerLinks | null
  private readonly outbox = new Outbox()
  private readonly store: HistoryStore | null
  private readonly sessions = new Set<Session>()
  private readonly keepAlive: KeepAlive
  private readonly maintenanceTimer: NodeJS.Timeout
  private closing: Promise<void> | null = null
  private onDrained: (() => void) | null = null

  /** `parts` holds the modules of the optional features `options` turns on (`loadOptionalParts`). */
  constructor (
    readonly options: ResolvedOptions,
    readonly log: FastifyBaseLogger,
    parts: OptionalParts
  ) {
    // `app.mles` methods work detached too (`const { publish } = app.mles`).
    for (const method of ['publish', 'subscribe', 'history', 'on', 'off', 'members', 'v1Address', 'channels', 'metrics', 'close'] as const) {
      Object.defineProperty(this, method, { value: this[method].bind(this), enumerable: false, writable: true, configurable: true })
    }
    this.presence = new Presence(log)
    this.notices = new ThrottledLog(log)
    this.store = openHistoryStore(options, parts, log)
    const redis = options.redis
    this.cluster = redis === undefined || parts.cluster === null
      ? null
      : new parts.cluster.RedisBus<HubMember>({ ...redis, historyLimit: options.historyLimit, channelIdleMs: options.channelIdleMs }, this.counters, log)
    const keyMode = { sharedKey: options.key, addressKey: options.v1?.addressKey }
    const translator = parts.v1 === null ? null : parts.v1.v1Translator(keyMode)
    this.hub = new Hub<HubMember>(options, this.outbox, this.counters, (error) => {
      log.error({ err: error }, 'mles: a subscribe() listener threw')
    }, this.store, this.cluster, translator)
    this.hub.onHistoryEvicted = (frames, channels) => {
      this.notices.write('warn', 'history-evicted', { frames, channels, heldBytes: this.hub.budget.held }, `mles: the history of all channels reached historyTotalBytes (${options.historyTotalBytes}); evicting the oldest frames of the least recently active channels`)
    }
    this.channelLimits = new ChannelLimits(options, this.hub, this.counters, this.notices)
    this.peers = options.v1?.peer === undefined || parts.v1Peers === null ? null : new parts.v1Peers.V1PeerLinks(this.hub, options.v1.peer, keyMode, this.counters, log)
    this.v1Limiter = parts.v1 === null ? null : new PerIpLimiter(options.perIpLimit, options.perIpWindowMs)
    this.v1 = parts.v1 === null || this.v1Limiter === null ? null : new parts.v1.V1Listener({ options, hub: this.hub, counters: this.counters, log, keyMode, cluster: this.cluster, channelRefusal: this.channelRefusal, memberJoined: this.memberJoined, memberLeft: this.memberLeft }, this.v1Limiter, this, log)
    this.keepAlive = new KeepAlive(this.sessions, options.pingIntervalMs, options.maxMissedPongs)
    this.keepAlive.start()
    const maintenanceMs = Math.min(60_000, Math.max(10, Math.floor(Math.min(options.channelIdleMs, options.perIpWindowMs) / 2)))
    this.maintenanceTimer = setInterval(() => {
      const now = Date.now()
      this.hub.expireIdle(now)
      this.v1Limiter?.sweep(now)
      this.channelLimits.sweep(now)
    }, maintenanceMs)
    this.maintenanceTimer.unref()
  }

  /** Connects to the cluster and opens the v1 listener, if any; rejects when either fails. */
  async start (): Promise<void> {
    try {
      if (this.cluster !== null) await this.cluster.start(this.hub)
      if (this.v1 !== null && this.options.v1 !== undefined) {
        const { port, host } = this.options.v1
        try {
          await this.v1.listen(port, host)
        } catch (error) {
          throw new Error(`fastify-mles: cannot listen for v1 clients on ${host.includes(':') ? `[${host}]` : host}:${port}: ${(error as Error).message}`)
        }
      }
    } catch (error) {
      await this.close()
      throw error
    }
  }

  v1Address (): AddressInfo | null {
    return this.v1?.address ?? null
  }

  get isClosed (): boolean {
    return this.closing !== null
  }

  /** Takes over an upgraded connection; `request` is its upgrade, kept until the join is decided. */
  accept (ws: WebSocket, request: FastifyRequest): void {
    this.upgrading.delete(request.raw.socket)
    if (this.closing !== null) {
      ws.on('error', () => {})
      ws.close(CloseCode.GOING_AWAY, CloseReason.SHUTDOWN)
      return
    }
    this.sessions.add(new Session(ws, this, request))
  }

  /** Takes over an upgraded connection of a CBOR WebSocket client at `v1.webSocketPath`. */
  acceptV1WebSocket (ws: WebSocket, request: FastifyRequest): void {
    this.upgrading.delete(request.raw.socket)
    if (this.closing !== null || this.v1 === null) {
      ws.on('error', () => {})
      ws.close(CloseCode.GOING_AWAY, CloseReason.SHUTDOWN)
      return
    }
    this.v1.acceptWebSocket(ws)
  }

  readonly channelRefusal = (name: string, ip: string): ChannelRefusal | null => this.channelLimits.refusal(name, ip)

  /** Connections held now: WebSocket (joined or not), v1, and upgrades on their way to becoming one. */
  get connectionCount (): number {
    return this.sessions.size + (this.v1?.connections ?? 0) + this.upgrading.size
  }

  /**
   * Whether one more connection fits under `maxConnections`; counted and
   * logged when not. With `upgrade`, the admitted upgrade's socket holds its
   * place until its WebSocket is accepted or it closes.
   */
  admitsConnection (upgrade?: Socket): boolean {
    const max = this.options.maxConnections
    if (max === 0) return true
    if (this.connectionCount >= max) this.sweepUpgrading()
    if (this.connectionCount >= max) {
      this.counters.rejectedMaxConnections++
      this.notices.write('warn', 'max-connections', { connections: this.connectionCount }, `mles: ${this.connectionCount} connections held (maxConnections ${max}); refusing new ones (503)`)
      return false
    }
    if (upgrade !== undefined) {
      this.upgrading.add(upgrade)
      if (this.upgrading.size > this.sweepUpgradingAt) this.sweepUpgrading()
    }
    return true
  }

  /** The upgrade was answered with plain HTTP (refused): its place is free. */
  upgradeAnswered (upgrade: Socket): void {
    this.upgrading.delete(upgrade)
  }

  /**
   * Frees the places of upgrades whose socket closed before they were accepted
   * or answered (a client gone mid-upgrade). Run when the places are full and
   * when the set has doubled, rather than with a 'close' listener per upgrade.
   */
  private sweepUpgrading (): void {
    for (const socket of this.upgrading) {
      if (socket.destroyed) this.upgrading.delete(socket)
    }
    this.sweepUpgradingAt = 2 * this.upgrading.size + 1024
  }

  readonly memberJoined = (member: PresentMember): void => { this.presence.joined(member) }
  readonly memberLeft = (member: PresentMember): void => { this.presence.left(member) }

  on (event: MlesMemberEventName, listener: MlesMemberListener): () => void {
    assertEventName(event)
    if (typeof listener !== 'function') throw new TypeError('fastify-mles: listener must be a function')
    return this.presence.on(event, listener)
  }

  off (event: MlesMemberEventName, listener: MlesMemberListener): void {
    assertEventName(event)
    this.presence.off(event, listener)
  }

  async members (channel: string): Promise<string[]> {
    assertChannelName(channel)
    const uids = new Set<string>()
    for (const member of this.hub.channel(channel)?.members ?? []) {
      // v1 peer links are members without a uid of their own (it starts with NUL).
      if (member.isOpen() && !member.uid.startsWith('\u0000')) uids.add(member.uid)
    }
    if (this.cluster !== null) {
      for (const uid of await this.cluster.members(channel)) uids.add(uid)
    }
    return [...uids].sort()
  }

  sessionClosed (session: Session): void {
    this.sessions.delete(session)
    if (this.onDrained !== null && this.sessions.size === 0) this.onDrained()
  }

  publish (channel: string, data: string | Uint8Array, options?: MlesPublishOptions): void {
    assertChannelName(channel)
    if (this.closing !== null) throw new Error('fastify-mles: publish() after close()')
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw new TypeError('fastify-mles: data must be a string or a Uint8Array')
    }
    const payload = typeof data === 'string' ? Buffer.from(data) : data
    if (payload.length > this.options.maxMessageBytes) {
      throw new RangeError(`fastify-mles: data of ${payload.length} bytes is over maxMessageBytes (${this.options.maxMessageBytes})`)
    }
    const binary = options?.binary ?? typeof data !== 'string'
    this.hub.publishTo(channel, payload, binary)
  }

  subscribe (channel: string, listener: MlesFrameListener): () => void {
    assertChannelName(channel)
    if (typeof listener !== 'function') throw new TypeError('fastify-mles: listener must be a function')
    const unsubscribe = this.hub.subscribe(channel, listener)
    this.cluster?.follow(channel)
    return unsubscribe
  }

  history (channel: string): MlesHistoryFrame[] {
    const history = this.hub.channel(channel)?.history ?? this.storedHistory(channel)
    return history === undefined ? [] : this.framesOf(history)
  }

  private framesOf (history: HistoryRing): MlesHistoryFrame[] {
    const frames: MlesHistoryFrame[] = []
    for (let i = 0; i < history.size; i++) {
      const wire = history.at(i)
      frames.push({ data: Buffer.from(framePayload(wire)), isBinary: isBinaryFrame(wire) })
    }
    return frames
  }

  /**
   * `history(channel)`, and in cluster mode, for a channel this node does not
   * hold, the history Redis keeps (what a joiner here would be replayed).
   */
  async clusterHistory (channel: string): Promise<MlesHistoryFrame[]> {
    if (this.cluster === null || this.hub.channel(channel) !== undefined) return this.history(channel)
    const frames = await this.cluster.storedHistory(channel)
    if (frames === null) return this.history(channel)
    const ring = new HistoryRing(this.options.historyLimit, this.options.historyMaxBytes)
    for (const frame of frames) ring.append(frame.payload, frame.isBinary)
    return this.framesOf(ring)
  }

  /** The history a channel not used since the restart will have: what the store keeps, within the limits. */
  private storedHistory (channel: string): HistoryRing | undefined {
    if (this.store === null) return undefined
    const ring = new HistoryRing(this.options.historyLimit, this.options.historyMaxBytes)
    for (const wire of this.store.load(channel)) ring.append(framePayload(wire), isBinaryFrame(wire))
    return ring
  }

  channels (): MlesChannelInfo[] {
    const list: MlesChannelInfo[] = []
    for (const channel of this.hub.allChannels()) {
      list.push({ name: channel.name, members: channel.members.length, historySize: channel.history.size, historyBytes: channel.history.bytes })
    }
    return list
  }

  metrics (): MlesMetricsSnapshot {
    return this.counters.snapshot(this.sessions.size + (this.v1?.connections ?? 0), this.hub.channelCount, this.hub.budget.held)
  }

  close (): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown()
    return this.closing
  }

  private async shutdown (): Promise<void> {
    this.keepAlive.stop()
    clearInterval(this.maintenanceTimer)
    this.peers?.close()
    const v1Closed = this.v1?.close()
    if (this.sessions.size > 0) {
      const drained = new Promise<void>((resolve) => { this.onDrained = resolve })
      for (const session of this.sessions) session.close(CloseCode.GOING_AWAY, CloseReason.SHUTDOWN)
      let graceTimer: NodeJS.Timeout | undefined
      const grace = new Promise<void>((resolve) => { graceTimer = setTimeout(resolve, SHUTDOWN_GRACE_MS) })
      await Promise.race([drained, grace])
      clearTimeout(graceTimer)
      for (const session of this.sessions) session.ws.terminate()
      this.onDrained = null
    }
    await v1Closed
    await this.cluster?.close()
    this.hub.clear()
    await this.store?.close()
  }
}
