import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, RedisOptions } from 'ioredis'
import type { Hub, HubMember, Replication } from '../hub/hub.js'
import type { Metrics } from '../metrics.js'
import type { ResolvedRedisOptions } from '../options.js'
import { framePayload, isBinaryFrame } from '../protocol/frame.js'
import { decodeEntry, encodeEntry, StreamId } from './entry.js'
import { describeRedis, KeyLayout, openRedis, type RedisConnection } from './redis-connection.js'

export { redactRedisUrl } from './redis-connection.js'

/**
 * Lua, so that a batch of frames — all published here within one event-loop
 * turn, one command instead of one per frame — is appended to its channel's
 * stream and announced to the nodes in one step: the pub/sub notices then
 * come in stream order, and each carries the entry's id, which is how a node
 * matches them with what it reads from the stream (replay, gap fill) and
 * drops the ones it has had.
 *
 * A frame flagged as expecting its stream (the node holds history Redis
 * should have) is not written if the stream is gone — Redis restarted
 * empty, or the stream expired while members stayed silent — nor is any
 * later frame of that stream in the batch: the script answers their
 * positions, and the node restores the history before sending them again.
 * `%PUBLISH%` is PUBLISH, or SPUBLISH (sharded) on a Redis Cluster.
 */
const PUBLISH_SCRIPT = `
local maxLength, ttl = ARGV[1], ARGV[2]
local missing = {}
local skipped = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  if missing[key] == nil and ARGV[3 * i] == '1' then missing[key] = redis.call('EXISTS', key) == 0 end
  if missing[key] then
    skipped[#skipped + 1] = i
  else
    local entry = ARGV[3 * i + 2]
    local id = redis.call('XADD', key, 'MAXLEN', '~', maxLength, '*', 'm', entry)
    redis.call('PEXPIRE', key, ttl)
    redis.call('%PUBLISH%', ARGV[3 * i + 1], id .. ' ' .. entry)
  end
end
return skipped`

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

/**
 * The entries after a node's cursor (a gap read), and whether Redis trimmed
 * some of them before the node could read them: 1 when the read is as long
 * as the stream keeps, nothing at or before the cursor is left, and the
 * stream has had more entries than it holds. In one step, so that trimming
 * cannot fall between the read and the check.
 */
const READ_AFTER_SCRIPT = `
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
local trimmed = 0
if #entries >= tonumber(ARGV[2]) and #redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', 1) == 0 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local length, added = 0, 0
  for i = 1, #info, 2 do
    if info[i] == 'length' then length = info[i + 1] elseif info[i] == 'entries-added' then added = info[i + 1] end
  end
  if added > length then trimmed = 1 end
end
return { trimmed, entries }`

/** Deletes a uid lease only if it is still ours. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/**
 * Extends each of our leases (KEYS, their tokens ARGV[2..]), takes one again
 * if it expired, and answers per lease: 1 extended, 2 taken again (Redis, or
 * the cluster master of its slot, lost it: it restarted), 0 held by another
 * connection. Every renewal of an interval in one call (per slot).
 */
const REFRESH_SCRIPT = `
local ttl = ARGV[1]
local held = {}
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if not holder then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ttl)
    held[i] = 2
  elseif holder == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    held[i] = 1
  else
    held[i] = 0
  end
end
return held`

interface BusCommands {
  /** `mlesPublish(count, ...streams, maxLength, ttlMs, ...(expectsStream, topic, entry) triples)`: the 1-based positions not written. */
  mlesPublish: (...args: Array<string | number | Buffer>) => Promise<number[]>
  mlesRelease: (key: string, token: string) => Promise<number>
  /** `mlesRestore(stream, maxLength, ttlMs, ...entries)` */
  mlesRestore: (...args: Array<string | number | Buffer>) => Promise<number>
  /** `mlesRefresh(count, ...keys, ttlMs, ...tokens)` */
  mlesRefresh: (...args: Array<string | number>) => Promise<number[]>
  /** `mlesReadAfterBuffer(stream, cursor, streamLength)`: [1 if entries were trimmed unread, the entries after the cursor] */
  mlesReadAfterBuffer: (stream: string, cursor: string, streamLength: number) => Promise<[number, Array<[Buffer, Buffer[]]>]>
}

type BusConnection = RedisConnection & BusCommands

/**
 * `url` or `cluster`; `keyPrefix` of every key and pub/sub channel; `leaseTtlMs`,
 * how long a crashed node's uids stay taken (renewed every third of it);
 * `connectTimeoutMs`, how long startup waits; `outboxBytes`, frames kept for
 * Redis while it is away.
 */
export interface RedisBusOptions extends ResolvedRedisOptions {
  historyLimit: number
  /** A channel's stream expires after this long without a frame. */
  channelIdleMs: number
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
  /** Redis answered the script call that last carried it (it was written, or skipped). */
  answered: boolean
}

/** This node's view of one channel's stream. */
interface Watch {
  /** The id of the last entry applied; null until the channel was read once (before, frames here are this node's only). */
  cursor: StreamId | null
  /** Notices held back until the stream is read (a read runs, or notices may have been missed); null when they apply at once. */
  held: Pending[] | null
  /** A read is running. */
  reading: boolean
  /** Notices may have been missed (a read failed, the subscription was lost): read again, and hold notices until then. */
  stale: boolean
  /** Settles when the first read is over, whatever its outcome. */
  ready: Promise<void>
  /** Joins under way: the channel must stay while they finish. */
  admitting: number
  /** The last sequence number applied per origin node: a frame sent twice (a retry after an unclear failure) is applied once. */
  lastSequenceOf: Map<string, number>
  /** Sequence numbers of this node's frames settled here while Redis was away, whose echo is still to come. */
  settledHere: Set<number>
  /**
   * This node's frames Redis took (the script answered) whose echo has not
   * come yet, by sequence number. Should the connection go now, Redis may have
   * lost them (it died before they were announced, or restarted empty): they
   * are kept here and sent again, and whoever has one applies it once.
   */
  awaitingEcho: Map<number, Outgoing>
}

/** Notices held for one channel while it is read; past this, they are dropped and read from the stream afterwards. */
const MAX_HELD_NOTICES = 10_000
/** Frames sent to Redis and not yet answered; past this, frames stay local (Redis is too slow or gone). */
const MAX_IN_FLIGHT = 65_536
/** Frames per script call at most, so that one call never holds Redis up for long. */
const MAX_BATCH = 1024

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
 *
 * On a Redis Cluster (option `redis.cluster`) a channel's keys share a hash
 * slot (`KeyLayout`), notices go through sharded pub/sub, and every script
 * call holds the keys of one slot.
 */
export class RedisBus<M extends HubMember> implements Replication {
  /** This node, in the entries it writes. */
  readonly nodeId = randomUUID()
  private readonly nodeIdBytes = Buffer.from(this.nodeId, 'latin1')
  private readonly commands: BusConnection
  private readonly subscriber: RedisConnection
  private readonly keys: KeyLayout
  /** Whether this is a Redis Cluster. */
  private readonly sharded: boolean
  private readonly watches = new Map<string, Watch>()
  private readonly leases = new Set<Lease>()
  /** Bytes of the topic prefix of one Redis: where a notice's channel name starts. */
  private readonly topicPrefixBytes: number
  /** Entries a channel's stream keeps: its history and the catch-up margin for nodes whose connection was cut. */
  private readonly streamLength: number
  /** An unfilled gap was logged since the last lost connection. */
  private gapLogged = false
  /** On a Redis Cluster: a shard's subscription was lost, and the channels are not subscribed again yet. */
  private resubscribing = false
  private hub: Hub<M> | null = null
  private leaseSerial = 0
  private inFlight = 0
  /** Every frame on its way was settled here (`settlePending`) since frames last went to Redis at once. */
  private pendingSettled = false
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
  /** Bytes of the entries in the watches' `awaitingEcho`, bounded like the outbox (`outboxBytes`). */
  private awaitingEchoBytes = 0
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
    this.sharded = options.cluster !== undefined
    this.streamLength = options.historyLimit + options.catchUpFrames
    this.keys = new KeyLayout(options.keyPrefix, this.sharded)
    // ioredis files a Cluster's auto-pipelined command under the slot of its first argument, which for our scripts is a key count: off there.
    this.commands = openRedis(options, { ...connection, enableAutoPipelining: !this.sharded, connectionName: `mles:${this.nodeId}` }) as BusConnection
    this.subscriber = openRedis(options, { ...connection, connectionName: `mles-sub:${this.nodeId}` }, { shardedSubscribers: true })
    this.commands.defineCommand('mlesPublish', { lua: PUBLISH_SCRIPT.replace('%PUBLISH%', this.sharded ? 'SPUBLISH' : 'PUBLISH') })
    this.commands.defineCommand('mlesRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT })
    this.commands.defineCommand('mlesRestore', { numberOfKeys: 1, lua: RESTORE_SCRIPT })
    this.commands.defineCommand('mlesRefresh', { lua: REFRESH_SCRIPT })
    this.commands.defineCommand('mlesReadAfter', { numberOfKeys: 1, lua: READ_AFTER_SCRIPT })
    this.topicPrefixBytes = Buffer.byteLength(options.keyPrefix + 'p:')

    this.commands.on('error', (error: Error) => { this.connectionFault('commands', error) })
    this.subscriber.on('error', (error: Error) => { this.connectionFault('subscriber', error) })
    this.commands.on('close', () => { this.connectionLost('commands') })
    this.subscriber.on('close', () => { this.connectionLost('subscriber') })
    this.commands.on('ready', () => { this.commandsReady() })
    this.subscriber.on('ready', () => { this.subscriberReady() })
    if (this.sharded) {
      this.subscriber.on('smessageBuffer', (topic: Buffer, message: Buffer) => { this.notice(topic, message) })
      // A shard's subscriber lost: its notices are missed until the channels are subscribed again and read.
      this.subscriber.on('-subscriber', () => { this.shardSubscriptionLost() })
      this.subscriber.on('subscribersReady', () => { this.resubscribeShards() })
    } else {
      this.subscriber.on('messageBuffer', (topic: Buffer, message: Buffer) => { this.notice(topic, message) })
    }
  }

  /** Connects both connections; rejects with a clear error if Redis cannot be reached in time. */
  async start (hub: Hub<M>): Promise<void> {
    this.hub = hub
    let deadline: NodeJS.Timeout | undefined
    try {
      // ioredis gives up by itself on one Redis; it keeps asking Sentinels or cluster nodes, so the deadline is ours.
      const late = new Promise<never>((_resolve, reject) => {
        deadline = setTimeout(() => { reject(new Error(`no answer within ${this.options.connectTimeoutMs} ms`)) }, this.options.connectTimeoutMs)
      })
      await Promise.race([Promise.all([this.commands.connect(), this.subscriber.connect()]), late])
    } catch (error) {
      this.commands.disconnect()
      this.subscriber.disconnect()
      throw new Error(`fastify-mles: cannot reach ${this.sharded || this.options.sentinels !== undefined ? '' : 'Redis at '}${describeRedis(this.options)}: ${(error as Error).message}`)
    } finally {
      clearTimeout(deadline)
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
    return this.keys.stream(channel)
  }

  private topic (channel: string): string {
    return this.keys.topic(channel)
  }

  private leaseKey (channel: string, uid: string): string {
    return this.keys.lease(channel, uid)
  }

  /** Subscribes to the notices of `channels` (on a Redis Cluster, one call per slot, as sharded pub/sub needs). */
  private async subscribe (channels: string[]): Promise<void> {
    if (!this.sharded) {
      await this.subscriber.subscribe(...channels.map((channel) => this.topic(channel)))
      return
    }
    await Promise.all([...this.bySlot(channels, (channel) => channel).values()].map(async (group) => await this.subscriber.ssubscribe(...group.map((channel) => this.topic(channel)))))
  }

  /** Groups items by the hash slot of their channel, in order (one group with one Redis). */
  private bySlot<T> (items: T[], channelOf: (item: T) => string): Map<number, T[]> {
    const groups = new Map<number, T[]>()
    if (!this.sharded) {
      groups.set(0, items)
      return groups
    }
    for (const item of items) {
      const slot = this.keys.slot(channelOf(item))
      const group = groups.get(slot)
      if (group === undefined) groups.set(slot, [item])
      else group.push(item)
    }
    return groups
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
    // A channel's leases share a slot, but which master holds it may change under us: every master is asked.
    const servers = this.sharded ? (this.commands as Cluster).nodes('master') : [this.commands]
    try {
      for (const server of servers) {
        let cursor = '0'
        do {
          const [next, keys] = await server.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
          cursor = next
          for (const key of keys) uids.push(key.slice(prefix.length))
        } while (cursor !== '0')
      }
    } catch (error) {
      this.fault('listing members', error)
      return []
    }
    return this.sharded ? [...new Set(uids)] : uids
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
    const item: Outgoing = { channel, payload, isBinary, uid, join, sequence, entry: encodeEntry(this.nodeIdBytes, sequence, uid, join, isBinary, payload), settled: false, serial: ++this.serial, answered: false }
    if (this.closed) {
      this.settleHere(item)
      return
    }
    if (this.commands.status !== 'ready' || this.sendFailing) {
      // Delivered and kept here now, after every earlier frame still on its way; the other nodes get it once Redis is back.
      if (!this.pendingSettled) this.settlePending()
      this.settleHere(item)
      this.enqueue(item)
      return
    }
    this.pendingSettled = false
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

  /** Sends frames in publishing order: one script call with one Redis, one per hash slot on a Redis Cluster. */
  private send (frames: Outgoing[]): void {
    if (!this.sharded) {
      this.sendSlot(frames)
      return
    }
    for (const group of this.bySlot(frames, (item) => item.channel).values()) this.sendSlot(group)
  }

  /** One script call for frames whose keys share one slot. */
  private sendSlot (batch: Outgoing[]): void {
    const args: Array<string | number | Buffer> = [batch.length]
    for (const item of batch) args.push(this.streamKey(item.channel))
    args.push(this.streamLength, this.options.channelIdleMs)
    for (const item of batch) args.push(this.expectsStream(item.channel) ? 1 : 0, this.topic(item.channel), item.entry)
    this.inFlightBatches.add(batch)
    this.awaitEchoes(batch)
    this.commands.mlesPublish(...args).then((skipped) => {
      this.inFlightBatches.delete(batch)
      this.inFlight -= batch.length
      this.sendFailing = false
      for (const item of batch) item.answered = true
      for (const position of skipped) this.echoNotExpected(batch[position - 1])
      if (skipped.length > 0) this.streamsMissing(skipped.map((position) => batch[position - 1]))
      this.flushOutbox()
    }, (error: unknown) => {
      this.inFlightBatches.delete(batch)
      this.inFlight -= batch.length
      for (const item of batch) this.echoNotExpected(item)
      this.fault('publishing', error)
      if (!this.sendFailing) {
        this.sendFailing = true
        // Whatever has not gone through is delivered and kept here now, in publishing order.
        this.settlePending(batch)
      }
      // Perhaps written after all (a timeout): sent again, the receivers apply it once.
      this.requeue(batch)
      this.retryLater()
    })
  }

  /** Tracks the frames of a batch being sent until their echo (which may come before the script's answer). */
  private awaitEchoes (batch: Outgoing[]): void {
    for (const item of batch) {
      item.answered = false
      if (item.sequence === 0 || this.awaitingEchoBytes + item.entry.length > this.options.outboxBytes) continue
      const watch = this.watches.get(item.channel)
      if (watch === undefined || watch.awaitingEcho.has(item.sequence)) continue
      watch.awaitingEcho.set(item.sequence, item)
      this.awaitingEchoBytes += item.entry.length
    }
  }

  /** A frame that will not be echoed from this send (not written): it goes back into the outbox instead. */
  private echoNotExpected (item: Outgoing): void {
    const watch = this.watches.get(item.channel)
    if (watch !== undefined) this.forgetEcho(watch, item.sequence)
  }

  /** Stops waiting for the echo of our frame `sequence` in `watch`. */
  private forgetEcho (watch: Watch, sequence: number): void {
    const item = watch.awaitingEcho.get(sequence)
    if (item === undefined) return
    watch.awaitingEcho.delete(sequence)
    this.awaitingEchoBytes -= item.entry.length
  }

  /**
   * The commands connection went: frames Redis took but has not announced
   * yet may be gone with it. They are delivered and kept here (if they were
   * not already) and go back into the outbox, in publishing order, ahead of
   * anything published later; a copy Redis did keep is applied once.
   */
  private resendUnechoed (): void {
    if (this.awaitingEchoBytes === 0) return
    // Everything older settles first, so that the history keeps publishing order.
    this.settlePending()
    const frames: Outgoing[] = []
    for (const watch of this.watches.values()) {
      for (const [sequence, item] of watch.awaitingEcho) {
        // Unanswered ones fail with the connection, and go back that way.
        if (!item.answered) continue
        frames.push(item)
        this.forgetEcho(watch, sequence)
      }
    }
    frames.sort((x, y) => x.serial - y.serial)
    this.requeue(frames)
  }

  /**
   * Whether this node holds history of `channel` that Redis should have too
   * (beyond its own frames still on their way): then a missing stream means
   * Redis lost it, and its frames wait until it is restored.
   */
  private expectsStream (channel: string): boolean {
    if (this.options.historyLimit === 0) return false
    const local = this.hub?.channel(channel)
    const watch = this.watches.get(channel)
    return local !== undefined && watch !== undefined && local.history.size > watch.settledHere.size
  }

  /**
   * Frames Redis did not write because their stream was gone: the channel's
   * history goes back first, from this node's memory, then the frames, in
   * their order. Both go the same way (one connection, one slot), so nothing
   * sent meanwhile overtakes them.
   */
  private streamsMissing (frames: Outgoing[]): void {
    const channels = new Set(frames.map((item) => item.channel))
    let restored = 0
    for (const channel of channels) {
      const restore = this.restoreChannel(channel)
      if (restore === null) continue
      restore.then((done) => {
        restored += done
        if (done === 1) {
          this.metrics.clusterRestoredChannels++
          if (restored === 1) this.log.warn(`mles: Redis lost the history of channel ${JSON.stringify(channel)} (it restarted empty, or the stream expired); restored it from this node's memory`)
        }
      }, (error: unknown) => { this.fault('restoring a history', error) })
    }
    this.requeue(frames)
  }

  /**
   * Delivers and keeps here, in publishing order, every frame of this node
   * not known to be in Redis and back: `also`, those in flight, waiting in the
   * outbox or for the end of this turn, and those Redis took whose echo has
   * not come. A frame settled later is then always a newer one, so this
   * node's history keeps its publishers' order whatever fails first.
   */
  private settlePending (also: Outgoing[] = []): void {
    const pending = [...also, ...this.batch]
    for (const inFlight of this.inFlightBatches) pending.push(...inFlight)
    for (let i = this.outboxHead; i < this.outbox.length; i++) pending.push(this.outbox[i])
    for (const watch of this.watches.values()) {
      for (const item of watch.awaitingEcho.values()) pending.push(item)
    }
    pending.sort((x, y) => x.serial - y.serial)
    for (const item of pending) this.settleHere(item)
    this.pendingSettled = true
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

  /** Frames not written go back into the outbox, where their publishing order puts them. */
  private requeue (frames: Outgoing[]): void {
    const waiting = this.outbox.slice(this.outboxHead)
    const merged: Outgoing[] = []
    let at = 0
    for (const item of frames) {
      while (at < waiting.length && waiting[at].serial < item.serial) merged.push(waiting[at++])
      merged.push(item)
    }
    while (at < waiting.length) merged.push(waiting[at++])
    this.outbox = merged
    this.outboxHead = 0
    for (const item of frames) this.outboxBytes += item.entry.length
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
    for (const sequence of [...watch.awaitingEcho.keys()]) this.forgetEcho(watch, sequence)
    this.hub?.drop(channel)
    if (this.subscriber.status === 'ready') {
      const topic = this.topic(channel)
      const unsubscribed = this.sharded ? this.subscriber.sunsubscribe(topic) : this.subscriber.unsubscribe(topic)
      unsubscribed.catch((error: unknown) => { this.fault('unsubscribing', error) })
    }
  }

  // ---- reading channels -------------------------------------------------

  private watch (channel: string): Watch {
    const existing = this.watches.get(channel)
    if (existing !== undefined) return existing
    const watch: Watch = { cursor: null, held: null, reading: false, stale: false, ready: Promise.resolve(), admitting: 0, lastSequenceOf: new Map(), settledHere: new Set(), awaitingEcho: new Map() }
    this.watches.set(channel, watch)
    this.hub?.channelOrCreate(channel)
    watch.ready = this.subscribeAndRead(channel, watch)
    return watch
  }

  private async subscribeAndRead (channel: string, watch: Watch): Promise<void> {
    watch.held = []
    if (this.subscriber.status === 'ready') {
      try {
        await this.subscribe([channel])
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
   * and applied after, those already read dropped by id. A failed read keeps
   * them held: applying them would move the cursor past what was missed.
   */
  private async read (channel: string, watch: Watch): Promise<void> {
    watch.reading = true
    watch.held ??= []
    try {
      for (;;) {
        const initial = watch.cursor === null
        let entries: Array<[Buffer, Buffer[]]> = []
        let failed = false
        try {
          if (this.commands.status !== 'ready') throw new Error('not connected')
          if (initial) {
            entries = (await this.commands.xrevrangeBuffer(this.streamKey(channel), '+', '-', 'COUNT', Math.max(1, this.options.historyLimit))).reverse()
          } else {
            const [trimmed, after] = await this.commands.mlesReadAfterBuffer(this.streamKey(channel), String(watch.cursor), this.streamLength)
            entries = after
            if (trimmed === 1) this.unfilledGap(channel)
          }
        } catch (error) {
          if ((error as Error).message !== 'not connected') this.fault('reading a channel', error)
          failed = true
        }
        if (this.watches.get(channel) !== watch) return
        const read: Pending[] = []
        for (const [idBytes, fields] of entries) {
          const id = StreamId.parse(idBytes.toString('latin1'))
          const body = fieldValue(fields)
          if (id === null || body === null) continue
          if (initial && this.options.historyLimit === 0) watch.cursor = id
          else if (initial) this.apply(channel, watch, id, body, true)
          else read.push({ id, body })
        }
        if (!initial && !failed) {
          // Merged with the notices held meanwhile, by id: a stream trimmed while this node was away still reaches
          // members through the notices it did get, instead of the cursor jumping past them.
          const merged = [...read, ...(watch.held ?? [])].sort((x, y) => x.id.isAfter(y.id) ? 1 : y.id.isAfter(x.id) ? -1 : 0)
          watch.held = []
          for (const notice of merged) this.apply(channel, watch, notice.id, notice.body, false)
        }
        if (failed) {
          watch.stale = true
          return
        }
        if (initial && watch.cursor === null) watch.cursor = StreamId.ZERO
        const held = watch.held ?? []
        if (held.length > MAX_HELD_NOTICES) {
          // Too many notices to hold: the ones let go are in the stream, after the cursor. Read on from there.
          watch.held = []
          continue
        }
        watch.held = watch.stale ? [] : null
        for (const notice of held) this.apply(channel, watch, notice.id, notice.body, false)
        return
      }
    } finally {
      watch.reading = false
    }
  }

  /** Redis trimmed frames this node had missed before it could read them: counted, and logged once per outage. */
  private unfilledGap (channel: string): void {
    this.metrics.clusterUnfilledGaps++
    if (this.gapLogged) return
    this.gapLogged = true
    this.log.warn(`mles: this node missed more frames of channel ${JSON.stringify(channel)} than Redis keeps (historyLimit + redis.catchUpFrames = ${this.streamLength}) while its connection was cut; its members here miss the oldest of them (counted as cluster_unfilled_gaps)`)
  }

  /** A stream notice from the subscriber connection. */
  private notice (topic: Buffer, message: Buffer): void {
    const channel = this.sharded ? this.keys.channelOfTopic(topic.toString('utf8')) : topic.toString('utf8', this.topicPrefixBytes)
    const watch = channel === null ? undefined : this.watches.get(channel)
    if (watch === undefined || channel === null) return
    const space = message.indexOf(0x20)
    const id = space > 0 ? StreamId.parse(message.toString('latin1', 0, space)) : null
    if (id === null) {
      this.metrics.clusterErrors++
      return
    }
    const body = message.subarray(space + 1)
    // Notices may have been missed: none applies before the stream is read from the cursor.
    if (watch.held === null && watch.stale) watch.held = []
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
    if (entry.origin === this.nodeId && entry.sequence !== 0) this.forgetEcho(watch, entry.sequence)
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
    if (which === 'commands') {
      this.commandsDown = this.commandsWereReady
      this.resendUnechoed()
    } else {
      this.subscriberDown = this.subscriberWasReady
      // Notices sent while the subscriber is away are lost: every channel needs a read once it is back.
      for (const watch of this.watches.values()) watch.stale = true
    }
    if (!wasDown && (this.commandsDown || this.subscriberDown)) {
      this.gapLogged = false
      this.metrics.clusterOutages++
      this.log.warn(`mles: lost the connection to ${this.sharded ? '' : 'Redis at '}${describeRedis(this.options)}; serving this node's members only until it is back`)
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
    for (const channel of this.watches.keys()) {
      const restore = this.restoreChannel(channel)
      if (restore !== null) restores.push(restore)
    }
    const restored = (await Promise.all(restores)).filter((done) => done === 1).length
    if (restored > 0) {
      this.metrics.clusterRestoredChannels += restored
      this.log.warn(`mles: Redis came back without the history of ${restored} channel(s); restored it from this node's memory`)
    }
  }

  /**
   * Writes this node's copy of a channel's history to Redis if its stream is
   * gone (1 if it was written), leaving out this node's frames that still
   * wait to be sent. Null when there is nothing to restore.
   */
  private restoreChannel (channel: string): Promise<number> | null {
    const local = this.hub?.channel(channel)
    const watch = this.watches.get(channel)
    if (local === undefined || watch === undefined || this.options.historyLimit === 0) return null
    const history = local.history
    const kept = history.size - watch.settledHere.size
    if (kept <= 0) return null
    const args: Array<string | number | Buffer> = [this.streamKey(channel), this.streamLength, this.options.channelIdleMs]
    for (let i = 0; i < kept; i++) {
      const wire = history.at(i)
      args.push(encodeEntry(this.nodeIdBytes, 0, history.senderAt(i), history.isJoinAt(i), isBinaryFrame(wire), framePayload(wire), true))
    }
    return this.commands.mlesRestore(...args)
  }

  private subscriberReady (): void {
    const reconnected = this.subscriberWasReady
    this.subscriberWasReady = true
    this.subscriberDown = false
    if (!reconnected) return
    this.recovered()
    const channels = [...this.watches.keys()]
    if (channels.length === 0) return
    this.subscribe(channels).then(() => { this.readStale() }, (error: unknown) => { this.fault('subscribing again', error) })
  }

  /** On a Redis Cluster: a shard's subscriber went away (its master failed): notices may be missed from now on. */
  private shardSubscriptionLost (): void {
    if (this.closed) return
    this.resubscribing = true
    for (const watch of this.watches.values()) watch.stale = true
  }

  /**
   * The shards' subscribers are back: every channel is subscribed again here
   * — ioredis does it too, but without telling when it is done — and only
   * then read from its cursor, so nothing falls between.
   */
  private resubscribeShards (): void {
    if (!this.resubscribing || this.closed) return
    const channels = [...this.watches.keys()]
    this.subscribe(channels).then(() => {
      this.resubscribing = false
      this.readStale()
    }, (error: unknown) => { this.fault('subscribing again', error) })
  }

  private recovered (): void {
    if (this.commandsDown || this.subscriberDown || this.closed) return
    this.log.info(`mles: reconnected to Redis; reading ${this.watches.size} channel(s) again`)
  }

  /** Reads every channel whose last read was cut short or that missed notices. */
  private readStale (): void {
    if (!this.connected || this.resubscribing) return
    for (const [channel, watch] of this.watches) {
      if (!watch.stale || watch.reading) continue
      watch.stale = false
      this.read(channel, watch).catch((error: unknown) => { this.fault('reading a channel', error) })
    }
  }

  /**
   * Every third of the lease time: renews our uid leases (one script call per
   * thousand, per slot on a Redis Cluster), restores the history of channels
   * whose leases Redis had lost, and retries reads that failed.
   */
  private maintain (): void {
    if (this.closed || this.commands.status !== 'ready') return
    for (const group of this.bySlot([...this.leases], (lease) => lease.channel).values()) {
      for (let start = 0; start < group.length; start += MAX_BATCH) this.renew(group.slice(start, start + MAX_BATCH))
    }
    if (this.resubscribing) this.resubscribeShards()
    else if (this.subscriber.status === 'ready') this.readStale()
  }

  private renew (batch: Lease[]): void {
    const args: Array<string | number> = [batch.length]
    for (const lease of batch) args.push(this.leaseKey(lease.channel, lease.uid))
    args.push(this.options.leaseTtlMs)
    for (const lease of batch) args.push(lease.token)
    this.commands.mlesRefresh(...args).then((held) => {
      const lost = new Set<string>()
      for (let i = 0; i < batch.length; i++) {
        if (!this.leases.has(batch[i])) continue
        if (held[i] === 2) lost.add(batch[i].channel)
        if (held[i] !== 0) continue
        this.metrics.clusterErrors++
        this.log.warn({ channel: batch[i].channel, uid: batch[i].uid }, 'mles: another node holds this uid too (joined while Redis was away)')
      }
      // Redis (or the master of these channels) restarted empty: a quiet channel's history would be gone for joiners elsewhere.
      for (const channel of lost) {
        this.restoreChannel(channel)?.then((done) => {
          if (done !== 1) return
          this.metrics.clusterRestoredChannels++
          this.log.warn(`mles: Redis lost the history of channel ${JSON.stringify(channel)}; restored it from this node's memory`)
        }, (error: unknown) => { this.fault('restoring a history', error) })
      }
    }, (error: unknown) => { this.fault('renewing uid leases', error) })
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

async function quit (connection: RedisConnection): Promise<void> {
  if (connection.status === 'ready') {
    try {
      await connection.quit()
      return
    } catch {}
  }
  connection.disconnect()
}
