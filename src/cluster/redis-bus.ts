import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import type { Hub, HubMember, Replication } from '../hub/hub.js'
import type { Metrics } from '../metrics.js'
import { framePayload, isBinaryFrame } from '../protocol/frame.js'
import { decodeEntry, encodeEntry, StreamId } from './entry.js'

/**
 * Lua, so that a batch of frames — all published here within one event-loop
 * turn, one command instead of one per frame — is appended to its channel's stream and announced to
 * the nodes in one step: the pub/sub notices then come in stream order, and
 * each carries the entry's id, which is how a node matches them with what it
 * reads from the stream (replay, gap fill) and drops the ones it has had.
 */
const PUBLISH_SCRIPT = `
local maxLength, ttl = ARGV[1], ARGV[2]
for i = 1, #KEYS do
  local entry = ARGV[2 * i + 2]
  local id = redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxLength, '*', 'm', entry)
  redis.call('PEXPIRE', KEYS[i], ttl)
  redis.call('PUBLISH', ARGV[2 * i + 1], id .. ' ' .. entry)
end
return #KEYS`

/**
 * Writes a channel's history back from a node's memory, only if Redis has no
 * stream for it (it restarted empty): the first node back restores it, the
 * others find it there. No notices: the nodes that hold the channel have it.
 */
const RESTORE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

/** Deletes a uid lease only if it is still ours. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/**
 * Extends each of our leases (KEYS, their tokens ARGV[2..]), takes one again
 * if it expired (say Redis restarted), and answers 0 for one that another
 * connection holds, 1 otherwise: every renewal of an interval in one call.
 */
const REFRESH_SCRIPT = `
local ttl = ARGV[1]
local held = {}
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if not holder then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ttl)
    held[i] = 1
  elseif holder == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    held[i] = 1
  else
    held[i] = 0
  end
end
return held`

interface BusRedis extends Redis {
  /** `mlesPublish(count, ...streams, maxLength, ttlMs, ...(topic, entry) pairs)` */
  mlesPublish: (...args: Array<string | number | Buffer>) => Promise<number>
  mlesRelease: (key: string, token: string) => Promise<number>
  /** `mlesRestore(stream, maxLength, ttlMs, ...entries)` */
  mlesRestore: (...args: Array<string | number | Buffer>) => Promise<number>
  /** `mlesRefresh(count, ...keys, ttlMs, ...tokens)` */
  mlesRefresh: (...args: Array<string | number>) => Promise<number[]>
}

export interface RedisBusOptions {
  /** redis:// or rediss:// URL. */
  url: string
  /** Prefix of every key and pub/sub channel this bus uses. */
  keyPrefix: string
  historyLimit: number
  /** A channel's stream expires after this long without a frame. */
  channelIdleMs: number
  /** A uid lease lives this long unless its node renews it (every third of it): how long a crashed node's uids stay taken. */
  leaseTtlMs: number
  /** How long startup waits for Redis. */
  connectTimeoutMs: number
  /** Bytes of frames kept for Redis while it is away; past it the oldest are dropped. */
  outboxBytes: number
}

/** A uid held in a channel, cluster-wide. */
export interface Lease {
  readonly channel: string
  readonly uid: string
  readonly token: string
}

/** A stream notice or entry that arrived while its channel was being read from the stream. */
interface Pending {
  id: StreamId
  body: Buffer
}

/** A frame on its way to Redis. */
interface Outgoing {
  channel: string
  payload: Uint8Array
  isBinary: boolean
  uid: string | null
  join: boolean
  sequence: number
  entry: Buffer
  /** Already in this node's history and delivered here (it could not go to Redis at once): its echo only moves the cursor. */
  settled: boolean
  /** Publishing order on this node, across channels. */
  serial: number
}

/** This node's view of one channel's stream. */
interface Watch {
  /** The id of the last entry applied; null until the channel was read once (before, frames here are this node's only). */
  cursor: StreamId | null
  /** Notices held back while the stream is being read; null when no read is running. */
  held: Pending[] | null
  /** A read was cut short (too many notices held, or Redis failed): read again. */
  stale: boolean
  /** Settles when the first read is over, whatever its outcome. */
  ready: Promise<void>
  /** Joins under way: the channel must stay while they finish. */
  admitting: number
  /** The last sequence number applied per origin node: a frame sent twice (a retry after an unclear failure) is applied once. */
  lastSequenceOf: Map<string, number>
  /** Sequence numbers of this node's frames settled here while Redis was away, whose echo is still to come. */
  settledHere: Set<number>
}

/** Notices held for one channel while it is read; past this, they are dropped and read from the stream afterwards. */
const MAX_HELD_NOTICES = 10_000
/** Frames sent to Redis and not yet answered; past this, frames stay local (Redis is too slow or gone). */
const MAX_IN_FLIGHT = 65_536
/** Frames per script call at most, so that one call never holds Redis up for long. */
const MAX_BATCH = 1024

/** Hides the password of a Redis URL in messages. */
export function redactRedisUrl (url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}

/**
 * The Redis engine (option `redis`): one channel space across every node.
 *
 * Each channel is a Redis stream holding its history (trimmed to the history
 * limit, expiring when idle). A frame published on any node is appended and
 * announced by one script; a node subscribes to the announcements of the
 * channels it has members or subscribers for, and reads a channel's stream
 * when it first needs it (history for joiners) and after any lost connection
 * (the gap), so every member gets every frame once, in stream order. A uid is
 * taken in a channel with a lease key, so a duplicate is refused on any node.
 *
 * When Redis is away, members of this node go on talking among themselves:
 * frames are kept in the local history only, faults are logged and counted,
 * and the connections come back by themselves.
 */
export class RedisBus<M extends HubMember> implements Replication {
  /** This node, in the entries it writes. */
  readonly nodeId = randomUUID()
  private readonly nodeIdBytes = Buffer.from(this.nodeId, 'latin1')
  private readonly commands: BusRedis
  private readonly subscriber: Redis
  private readonly watches = new Map<string, Watch>()
  private readonly leases = new Set<Lease>()
  private readonly topicPrefix: string
  /** Bytes of `topicPrefix`: where a notice's channel name starts. */
  private readonly topicPrefixBytes: number
  private hub: Hub<M> | null = null
  private leaseSerial = 0
  private inFlight = 0
  /** Frames published in this event-loop turn, sent together at its end. */
  private batch: Outgoing[] = []
  /** Frames waiting for Redis (away, or too far behind), in publishing order; `outboxHead` is the first. */
  private outbox: Outgoing[] = []
  private outboxHead = 0
  private outboxBytes = 0
  private outboxDropsLogged = false
  /** The last script call failed (Redis slow, frozen or failing while connected): frames are settled here until one succeeds. */
  private sendFailing = false
  private retryTimer: NodeJS.Timeout | null = null
  private serial = 0
  /** Script calls not answered yet, with their frames. */
  private readonly inFlightBatches = new Set<Outgoing[]>()
  private maintenanceTimer: NodeJS.Timeout | null = null
  private closed = false
  /** Whether each connection has been ready before: a later 'ready' is a reconnection. */
  private commandsWereReady = false
  private subscriberWasReady = false
  private commandsDown = false
  private subscriberDown = false

  constructor (
    private readonly options: RedisBusOptions,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger
  ) {
    const connection: RedisOptions = {
      lazyConnect: true,
      // Never queue or replay commands across an outage: frames are kept locally instead, and memory stays bounded.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), 2000),
      connectTimeout: options.connectTimeoutMs,
      // A Redis that hangs without closing must not hold joins up forever: they go on locally.
      commandTimeout: Math.max(1000, options.connectTimeoutMs)
    }
    this.commands = new Redis(options.url, { ...connection, enableAutoPipelining: true, connectionName: `mles:${this.nodeId}` }) as BusRedis
    this.subscriber = new Redis(options.url, { ...connection, connectionName: `mles-sub:${this.nodeId}` })
    this.commands.defineCommand('mlesPublish', { lua: PUBLISH_SCRIPT })
    this.commands.defineCommand('mlesRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT })
    this.commands.defineCommand('mlesRestore', { numberOfKeys: 1, lua: RESTORE_SCRIPT })
    this.commands.defineCommand('mlesRefresh', { lua: REFRESH_SCRIPT })
    this.topicPrefix = options.keyPrefix + 'p:'
    this.topicPrefixBytes = Buffer.byteLength(this.topicPrefix)

    this.commands.on('error', (error: Error) => { this.connectionFault('commands', error) })
    this.subscriber.on('error', (error: Error) => { this.connectionFault('subscriber', error) })
    this.commands.on('close', () => { this.connectionLost('commands') })
    this.subscriber.on('close', () => { this.connectionLost('subscriber') })
    this.commands.on('ready', () => { this.commandsReady() })
    this.subscriber.on('ready', () => { this.subscriberReady() })
    this.subscriber.on('messageBuffer', (topic: Buffer, message: Buffer) => { this.notice(topic, message) })
  }

  /** Connects both connections; rejects with a clear error if Redis cannot be reached in time. */
  async start (hub: Hub<M>): Promise<void> {
    this.hub = hub
    try {
      await Promise.all([this.commands.connect(), this.subscriber.connect()])
    } catch (error) {
      this.commands.disconnect()
      this.subscriber.disconnect()
      throw new Error(`fastify-mles: cannot reach Redis at ${redactRedisUrl(this.options.url)}: ${(error as Error).message}`)
    }
    const refreshMs = Math.max(10, Math.floor(this.options.leaseTtlMs / 3))
    this.maintenanceTimer = setInterval(() => { this.maintain() }, refreshMs)
    this.maintenanceTimer.unref()
  }

  /** Whether both connections are up. */
  get connected (): boolean {
    return this.commands.status === 'ready' && this.subscriber.status === 'ready'
  }

  private streamKey (channel: string): string {
    return this.options.keyPrefix + 'h:' + channel
  }

  private topic (channel: string): string {
    return this.topicPrefix + channel
  }

  private leaseKey (channel: string, uid: string): string {
    return `${this.options.keyPrefix}u:${Buffer.byteLength(channel)}:${channel}:${uid}`
  }

  // ---- joining and leaving ----------------------------------------------

  /**
   * Takes `uid` in `channel` cluster-wide and makes sure the channel's history
   * is here, then calls `enter` — synchronously, so nothing runs between —
   * with the lease, or with null if another connection holds the uid. With
   * Redis away, the uid is checked on this node only.
   */
  async admit (channel: string, uid: string, enter: (lease: Lease | null) => void): Promise<void> {
    const watch = this.watch(channel)
    watch.admitting++
    try {
      const lease: Lease = { channel, uid, token: `${this.nodeId}:${++this.leaseSerial}` }
      let taken = false
      if (this.commands.status === 'ready') {
        try {
          taken = await this.commands.set(this.leaseKey(channel, uid), lease.token, 'PX', this.options.leaseTtlMs, 'NX') === null
        } catch (error) {
          this.fault('taking a uid lease', error)
        }
      }
      if (taken) {
        enter(null)
        return
      }
      this.leases.add(lease)
      await watch.ready
      enter(lease)
    } finally {
      watch.admitting--
      this.channelUnused(channel)
    }
  }

  /** Gives a uid back (its connection left). */
  release (lease: Lease): void {
    if (!this.leases.delete(lease) || this.commands.status !== 'ready') return
    this.commands.mlesRelease(this.leaseKey(lease.channel, lease.uid), lease.token).catch((error: unknown) => { this.fault('releasing a uid lease', error) })
  }

  /**
   * The uids holding a lease in `channel`, on every node: a SCAN of the
   * channel's lease keys (a cost that grows with the keys in Redis, not with
   * the channel). Empty while Redis is away.
   */
  async members (channel: string): Promise<string[]> {
    if (this.commands.status !== 'ready') return []
    const prefix = this.leaseKey(channel, '')
    const pattern = prefix.replace(/[*?[\]\\]/g, '\\$&') + '*'
    const uids: string[] = []
    try {
      let cursor = '0'
      do {
        const [next, keys] = await this.commands.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        cursor = next
        for (const key of keys) uids.push(key.slice(prefix.length))
      } while (cursor !== '0')
    } catch (error) {
      this.fault('listing members', error)
      return []
    }
    return uids
  }

  /**
   * The last `historyLimit` frames of `channel` as Redis holds them, oldest
   * first: the history of a channel this node does not hold. Null while Redis
   * is away or fails.
   */
  async storedHistory (channel: string): Promise<Array<{ payload: Buffer, isBinary: boolean }> | null> {
    if (this.commands.status !== 'ready') return null
    if (this.options.historyLimit === 0) return []
    try {
      const entries = await this.commands.xrevrangeBuffer(this.streamKey(channel), '+', '-', 'COUNT', this.options.historyLimit)
      const frames: Array<{ payload: Buffer, isBinary: boolean }> = []
      for (let i = entries.length - 1; i >= 0; i--) {
        const body = fieldValue(entries[i][1])
        const entry = body === null ? null : decodeEntry(body)
        if (entry !== null) frames.push({ payload: entry.payload, isBinary: entry.isBinary })
      }
      return frames
    } catch (error) {
      this.fault('reading a history', error)
      return null
    }
  }

  /** Starts following `channel` for server-side subscribers. */
  follow (channel: string): void {
    this.watch(channel)
  }

  // ---- Replication ------------------------------------------------------

  publish (channel: string, payload: Uint8Array, isBinary: boolean, uid: string | null, join: boolean, sequence: number): void {
    const item: Outgoing = { channel, payload, isBinary, uid, join, sequence, entry: encodeEntry(this.nodeIdBytes, sequence, uid, join, isBinary, payload), settled: false, serial: ++this.serial }
    if (this.closed) {
      this.settleHere(item)
      return
    }
    if (this.commands.status !== 'ready' || this.sendFailing) {
      // Delivered and kept here now; the other nodes get it once Redis is back.
      this.settleHere(item)
      this.enqueue(item)
      return
    }
    if (this.inFlight >= MAX_IN_FLIGHT || this.outboxHead < this.outbox.length) {
      // Behind frames still waiting: after them, so each publisher's order holds.
      this.enqueue(item)
      return
    }
    this.inFlight++
    this.batch.push(item)
    if (this.batch.length === 1) setImmediate(this.sendBatch)
    else if (this.batch.length >= MAX_BATCH) this.sendBatch()
  }

  /** Sends the frames published in this turn, in order, as one script call. */
  private readonly sendBatch = (): void => {
    const batch = this.batch
    if (batch.length === 0) return
    this.batch = []
    this.send(batch)
  }

  private send (batch: Outgoing[]): void {
    const args: Array<string | number | Buffer> = [batch.length]
    for (const item of batch) args.push(this.streamKey(item.channel))
    args.push(this.options.historyLimit, this.options.channelIdleMs)
    for (const item of batch) args.push(this.topic(item.channel), item.entry)
    this.inFlightBatches.add(batch)
    this.commands.mlesPublish(...args).then(() => {
      this.inFlightBatches.delete(batch)
      this.inFlight -= batch.length
      this.sendFailing = false
      this.flushOutbox()
    }, (error: unknown) => {
      this.inFlightBatches.delete(batch)
      this.inFlight -= batch.length
      this.fault('publishing', error)
      if (!this.sendFailing) {
        this.sendFailing = true
        // Whatever has not gone through is delivered and kept here now, in publishing order.
        const waiting = [...batch, ...this.outbox.slice(this.outboxHead)]
        for (const pending of this.inFlightBatches) waiting.push(...pending)
        waiting.sort((x, y) => x.serial - y.serial)
        for (const item of waiting) this.settleHere(item)
      }
      // Perhaps written after all (a timeout): sent again, the receivers apply it once.
      this.requeue(batch)
      this.retryLater()
    })
  }

  /** Delivers a frame here and keeps it in this node's history, once. */
  private settleHere (item: Outgoing): void {
    if (item.settled) return
    item.settled = true
    this.metrics.clusterUnsentFrames++
    if (item.sequence !== 0) this.watches.get(item.channel)?.settledHere.add(item.sequence)
    // After the hub's own fan-out of this frame, never inside it.
    process.nextTick(() => { this.hub?.settleLocal(item.channel, item.payload, item.isBinary, item.uid, item.join, item.sequence) })
  }

  private enqueue (item: Outgoing): void {
    this.outbox.push(item)
    this.outboxBytes += item.entry.length
    this.trimOutbox()
  }

  /** Frames whose sending failed go back into the outbox, where their publishing order puts them. */
  private requeue (batch: Outgoing[]): void {
    const waiting = this.outbox.slice(this.outboxHead)
    let at = 0
    while (at < waiting.length && waiting[at].serial < batch[0].serial) at++
    this.outbox = [...waiting.slice(0, at), ...batch, ...waiting.slice(at)]
    this.outboxHead = 0
    for (const item of batch) this.outboxBytes += item.entry.length
    this.trimOutbox()
  }

  /** Past `outboxBytes`, the oldest frames go: counted, and logged once per outage. */
  private trimOutbox (): void {
    let dropped = 0
    while (this.outboxBytes > this.options.outboxBytes && this.outboxHead < this.outbox.length) {
      const oldest = this.outbox[this.outboxHead++]
      this.outboxBytes -= oldest.entry.length
      this.watches.get(oldest.channel)?.settledHere.delete(oldest.sequence)
      dropped++
    }
    if (dropped === 0) return
    this.metrics.clusterDroppedFrames += dropped
    this.compactOutbox()
    if (!this.outboxDropsLogged) {
      this.outboxDropsLogged = true
      this.log.error(`mles: more than ${this.options.outboxBytes} bytes of frames waiting for Redis; dropping the oldest (counted as cluster_dropped_frames): members on other nodes will miss them`)
    }
  }

  private compactOutbox (): void {
    if (this.outboxHead > 1024 && this.outboxHead * 2 > this.outbox.length) {
      this.outbox = this.outbox.slice(this.outboxHead)
      this.outboxHead = 0
    }
  }

  /** While sending fails on a live connection, one batch a second tries again. */
  private retryLater (): void {
    if (this.retryTimer !== null || this.closed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.flushOutbox()
    }, 1000)
    this.retryTimer.unref()
  }

  /** Sends what waits for Redis, in order, a batch at a time, as far as the in-flight bound allows (one batch while sending fails). */
  private flushOutbox (): void {
    let batches = 0
    while (this.outboxHead < this.outbox.length && this.commands.status === 'ready' && this.inFlight < MAX_IN_FLIGHT && !this.closed && !(this.sendFailing && batches > 0)) {
      batches++
      const end = Math.min(this.outbox.length, this.outboxHead + MAX_BATCH)
      const batch = this.outbox.slice(this.outboxHead, end)
      this.outboxHead = end
      for (const item of batch) this.outboxBytes -= item.entry.length
      this.inFlight += batch.length
      this.send(batch)
    }
    if (this.outboxHead >= this.outbox.length) {
      this.outbox = []
      this.outboxHead = 0
      this.outboxBytes = 0
      this.outboxDropsLogged = false
    } else {
      this.compactOutbox()
    }
  }

  channelUnused (channel: string): void {
    const watch = this.watches.get(channel)
    if (watch === undefined || watch.admitting > 0) return
    const local = this.hub?.channel(channel)
    if (local !== undefined && !local.isUnused()) return
    this.watches.delete(channel)
    this.hub?.drop(channel)
    if (this.subscriber.status === 'ready') {
      this.subscriber.unsubscribe(this.topic(channel)).catch((error: unknown) => { this.fault('unsubscribing', error) })
    }
  }

  // ---- reading channels -------------------------------------------------

  private watch (channel: string): Watch {
    const existing = this.watches.get(channel)
    if (existing !== undefined) return existing
    const watch: Watch = { cursor: null, held: null, stale: false, ready: Promise.resolve(), admitting: 0, lastSequenceOf: new Map(), settledHere: new Set() }
    this.watches.set(channel, watch)
    this.hub?.channelOrCreate(channel)
    watch.ready = this.subscribeAndRead(channel, watch)
    return watch
  }

  private async subscribeAndRead (channel: string, watch: Watch): Promise<void> {
    watch.held = []
    if (this.subscriber.status === 'ready') {
      try {
        await this.subscriber.subscribe(this.topic(channel))
      } catch (error) {
        this.fault('subscribing', error)
        watch.stale = true
      }
    } else {
      watch.stale = true
    }
    await this.read(channel, watch)
  }

  /**
   * Reads the channel's stream: its recent history on the first read (into
   * the history only), the entries after the cursor on later ones (delivered,
   * since members have not had them). Notices that arrive meanwhile are held
   * and applied after, those already read dropped by id.
   */
  private async read (channel: string, watch: Watch): Promise<void> {
    watch.held ??= []
    for (;;) {
      const initial = watch.cursor === null
      let entries: Array<[Buffer, Buffer[]]> = []
      let failed = false
      try {
        if (this.commands.status !== 'ready') throw new Error('not connected')
        if (initial) {
          entries = (await this.commands.xrevrangeBuffer(this.streamKey(channel), '+', '-', 'COUNT', Math.max(1, this.options.historyLimit))).reverse()
        } else {
          entries = await this.commands.xrangeBuffer(this.streamKey(channel), '(' + String(watch.cursor), '+')
        }
      } catch (error) {
        if ((error as Error).message !== 'not connected') this.fault('reading a channel', error)
        failed = true
      }
      if (this.watches.get(channel) !== watch) return
      for (const [idBytes, fields] of entries) {
        const id = StreamId.parse(idBytes.toString('latin1'))
        const body = fieldValue(fields)
        if (id === null || body === null) continue
        if (initial && this.options.historyLimit === 0) watch.cursor = id
        else this.apply(channel, watch, id, body, initial)
      }
      if (initial && !failed && watch.cursor === null) watch.cursor = StreamId.ZERO
      const held = watch.held ?? []
      if (held.length > MAX_HELD_NOTICES && !failed) {
        // Too many notices to hold: the ones let go are in the stream, after the cursor. Read on from there.
        watch.held = []
        continue
      }
      watch.held = null
      for (const notice of held) this.apply(channel, watch, notice.id, notice.body, false)
      watch.stale = failed || watch.stale
      return
    }
  }

  /** A stream notice from the subscriber connection. */
  private notice (topic: Buffer, message: Buffer): void {
    const channel = topic.toString('utf8', this.topicPrefixBytes)
    const watch = this.watches.get(channel)
    if (watch === undefined) return
    const space = message.indexOf(0x20)
    const id = space > 0 ? StreamId.parse(message.toString('latin1', 0, space)) : null
    if (id === null) {
      this.metrics.clusterErrors++
      return
    }
    const body = message.subarray(space + 1)
    if (watch.held !== null) {
      // Past the bound, the rest is read again from the stream once this read is over.
      if (watch.held.length <= MAX_HELD_NOTICES) watch.held.push({ id, body })
      return
    }
    this.apply(channel, watch, id, body, false)
  }

  private apply (channel: string, watch: Watch, id: StreamId, body: Buffer, historyOnly: boolean): void {
    if (watch.cursor !== null && !id.isAfter(watch.cursor)) return
    watch.cursor = id
    const entry = decodeEntry(body)
    const local = this.hub?.channel(channel)
    if (entry === null || local === undefined || this.hub === null) {
      if (entry === null) this.metrics.clusterErrors++
      return
    }
    // Restored history is news only to a node reading the channel anew.
    if (entry.restored && !historyOnly) return
    if (entry.sequence !== 0) {
      if (entry.sequence <= (watch.lastSequenceOf.get(entry.origin) ?? 0)) return
      watch.lastSequenceOf.set(entry.origin, entry.sequence)
      // Ours, already in the history here since Redis was away when it was published.
      if (entry.origin === this.nodeId && watch.settledHere.delete(entry.sequence)) return
    }
    if (historyOnly) {
      local.history.append(entry.payload, entry.isBinary, entry.uid, entry.join)
      return
    }
    this.hub.replicated(local, entry.payload, entry.isBinary, entry.uid, entry.join, entry.origin === this.nodeId, entry.sequence)
  }

  // ---- faults and recovery ----------------------------------------------

  private fault (what: string, error: unknown): void {
    this.metrics.clusterErrors++
    if (!this.closed) this.log.debug({ err: error }, `mles: redis failed ${what}`)
  }

  private connectionFault (which: 'commands' | 'subscriber', error: Error): void {
    this.metrics.clusterErrors++
    if (!this.closed) this.log.debug({ err: error, connection: which }, 'mles: redis connection error')
  }

  private connectionLost (which: 'commands' | 'subscriber'): void {
    if (this.closed) return
    const wasDown = this.commandsDown || this.subscriberDown
    if (which === 'commands') this.commandsDown = this.commandsWereReady
    else this.subscriberDown = this.subscriberWasReady
    if (which === 'subscriber') {
      // Notices sent while the subscriber is away are lost: every channel needs a read once it is back.
      for (const watch of this.watches.values()) watch.stale = true
    }
    if (!wasDown && (this.commandsDown || this.subscriberDown)) {
      this.metrics.clusterOutages++
      this.log.warn(`mles: lost the connection to Redis at ${redactRedisUrl(this.options.url)}; serving this node's members only until it is back`)
    }
  }

  private commandsReady (): void {
    const reconnected = this.commandsWereReady
    this.commandsWereReady = true
    this.commandsDown = false
    if (reconnected) {
      this.recovered()
      this.maintain()
      // History first, then what waited: a restored stream keeps its order.
      this.restoreHistories().then(() => { this.flushOutbox() }, (error: unknown) => {
        this.fault('restoring histories', error)
        this.flushOutbox()
      })
    }
  }

  /**
   * After a reconnection: every channel held here whose stream Redis no
   * longer has (it restarted without persistence) gets its history back from
   * this node's copy — but for this node's frames still waiting in the
   * outbox, which follow as they are.
   */
  private async restoreHistories (): Promise<void> {
    const restores: Array<Promise<number>> = []
    for (const [channel, watch] of this.watches) {
      const local = this.hub?.channel(channel)
      if (local === undefined || this.options.historyLimit === 0) continue
      const history = local.history
      const kept = history.size - watch.settledHere.size
      if (kept <= 0) continue
      const args: Array<string | number | Buffer> = [this.streamKey(channel), this.options.historyLimit, this.options.channelIdleMs]
      for (let i = 0; i < kept; i++) {
        const wire = history.at(i)
        args.push(encodeEntry(this.nodeIdBytes, 0, history.senderAt(i), history.isJoinAt(i), isBinaryFrame(wire), framePayload(wire), true))
      }
      restores.push(this.commands.mlesRestore(...args))
    }
    const restored = (await Promise.all(restores)).filter((done) => done === 1).length
    if (restored > 0) {
      this.metrics.clusterRestoredChannels += restored
      this.log.warn(`mles: Redis came back without the history of ${restored} channel(s); restored it from this node's memory`)
    }
  }

  private subscriberReady (): void {
    const reconnected = this.subscriberWasReady
    this.subscriberWasReady = true
    this.subscriberDown = false
    if (!reconnected) return
    this.recovered()
    const topics = [...this.watches.keys()].map((channel) => this.topic(channel))
    if (topics.length === 0) return
    this.subscriber.subscribe(...topics).then(() => { this.readStale() }, (error: unknown) => { this.fault('subscribing again', error) })
  }

  private recovered (): void {
    if (this.commandsDown || this.subscriberDown || this.closed) return
    this.log.info(`mles: reconnected to Redis; reading ${this.watches.size} channel(s) again`)
  }

  /** Reads every channel whose last read was cut short or that missed notices. */
  private readStale (): void {
    if (!this.connected) return
    for (const [channel, watch] of this.watches) {
      if (!watch.stale || watch.held !== null) continue
      watch.stale = false
      this.read(channel, watch).catch((error: unknown) => { this.fault('reading a channel', error) })
    }
  }

  /** Every third of the lease time: renews our uid leases (one script call per thousand) and retries reads that failed. */
  private maintain (): void {
    if (this.closed || this.commands.status !== 'ready') return
    const leases = [...this.leases]
    for (let start = 0; start < leases.length; start += MAX_BATCH) {
      const batch = leases.slice(start, start + MAX_BATCH)
      const args: Array<string | number> = [batch.length]
      for (const lease of batch) args.push(this.leaseKey(lease.channel, lease.uid))
      args.push(this.options.leaseTtlMs)
      for (const lease of batch) args.push(lease.token)
      this.commands.mlesRefresh(...args).then((held) => {
        for (let i = 0; i < batch.length; i++) {
          if (held[i] !== 0 || !this.leases.has(batch[i])) continue
          this.metrics.clusterErrors++
          this.log.warn({ channel: batch[i].channel, uid: batch[i].uid }, 'mles: another node holds this uid too (joined while Redis was away)')
        }
      }, (error: unknown) => { this.fault('renewing uid leases', error) })
    }
    if (this.subscriber.status === 'ready') this.readStale()
  }

  /** Gives back every lease and closes both connections. */
  async close (): Promise<void> {
    if (this.closed) return
    if (this.maintenanceTimer !== null) clearInterval(this.maintenanceTimer)
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.sendBatch()
    this.flushOutbox()
    if (this.commands.status === 'ready') {
      await Promise.allSettled([...this.leases].map(async (lease) => await this.commands.mlesRelease(this.leaseKey(lease.channel, lease.uid), lease.token)))
    }
    this.leases.clear()
    this.closed = true
    await Promise.allSettled([quit(this.commands), quit(this.subscriber)])
  }
}

function fieldValue (fields: Buffer[]): Buffer | null {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i].length === 1 && fields[i][0] === 0x6d) return fields[i + 1]
  }
  return null
}

async function quit (connection: Redis): Promise<void> {
  if (connection.status === 'ready') {
    try {
      await connection.quit()
      return
    } catch {}
  }
  connection.disconnect()
}
