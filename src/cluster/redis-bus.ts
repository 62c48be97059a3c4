import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, RedisOptions } from 'ioredis'
import type { Hub, HubMember, Replication } from '../hub/hub.js'
import type { Metrics } from '../metrics.js'
import type { ResolvedRedisOptions } from '../options.js'
import { framePayload, isBinaryFrame } from '../protocol/frame.js'
import { decodeEntry, encodeEntry, parseStreamPack, StreamId } from './entry.js'
import { describeRedis, KeyLayout, NODE_ID_LENGTH, openRedis, type RedisConnection } from './redis-connection.js'

export { redactRedisUrl } from './redis-connection.js'

/**
 * Lua, so that a batch of frames — all published here within one event-loop
 * turn, one command instead of one per frame — is appended to its channel's
 * stream and announced in one step. KEYS holds each frame's stream; ARGV
 * the stream length, the idle expiry, this node's id, the key prefix's
 * length and whether keys carry a hash tag (a Redis Cluster) — from which
 * the script finds the channel's registry and topics beside its stream —
 * then two per frame: flags (`1` if it expects its stream, else `0`,
 * followed by the id it had if it is sent again) and the entry.
 *
 * A frame is announced to the other nodes holding its channel only (those
 * the registry names, until their registration lapses): its publisher gets
 * the answer instead of a notice. Notices and answers carry each entry's
 * predecessor in the stream beside its id: a node applies entries strictly
 * along that chain, so its own frames, which it learns of by the answer,
 * take their place among the others', which come by notice on another
 * connection, and a link missing means it must read the stream.
 *
 * A frame flagged as expecting its stream (the node holds history Redis
 * should have) is not written if the stream is gone — Redis restarted
 * empty, or the stream expired while members stayed silent — nor is any
 * later frame of that stream in the batch: the answer for them is empty,
 * and the node restores the history before sending them again. A frame sent
 * again that the stream already holds (Redis kept it after all) is not
 * written twice. `%PUBLISH%` is PUBLISH, or SPUBLISH (sharded) on a Redis
 * Cluster.
 *
 * Answers, per frame: predecessor id and id, or two empty strings.
 */
const PUBLISH_SCRIPT = `
local maxLength, ttl, origin, prefixLength, tagged = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local missing, newest, holders, topics = {}, {}, {}, {}
local answer = {}
for i = 1, #KEYS do
  local key, flags = KEYS[i], ARGV[4 + 2 * i]
  if missing[key] == nil and string.byte(flags, 1) == 49 then missing[key] = redis.call('EXISTS', key) == 0 end
  local previous, id = '', ''
  if not missing[key] then
    local resent = string.sub(flags, 2)
    if resent ~= '' and #redis.call('XRANGE', key, resent, resent) > 0 then
      local before = redis.call('XREVRANGE', key, '(' .. resent, '-', 'COUNT', 1)
      previous, id = '0-0', resent
      if #before > 0 then previous = before[1][1] end
    else
      previous = newest[key]
      if previous == nil then
        local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
        previous = '0-0'
        if #last > 0 then previous = last[1][1] end
      end
      local entry = ARGV[5 + 2 * i]
      id = redis.call('XADD', key, 'MAXLEN', '~', maxLength, '*', 'm', entry)
      redis.call('PEXPIRE', key, ttl)
      newest[key] = id
      local nodes = holders[key]
      if nodes == nil then
        -- The stream is <prefix[{tag}]>h:<channel>; the registry and the topics sit beside it.
        local cut = prefixLength
        if tagged then cut = string.find(key, '}', prefixLength + 1, true) end
        local head, channel = string.sub(key, 1, cut), string.sub(key, cut + 3)
        local registry = head .. 'r:' .. channel
        topics[key] = head .. 'n:' .. channel .. ':'
        nodes = {}
        local fields = redis.call('HGETALL', registry)
        for j = 1, #fields, 2 do
          if tonumber(fields[j + 1]) < now then redis.call('HDEL', registry, fields[j])
          elseif fields[j] ~= origin then nodes[#nodes + 1] = fields[j] end
        end
        holders[key] = nodes
      end
      if #nodes > 0 then
        local notice, topic = previous .. ' ' .. id .. ' ' .. entry, topics[key]
        for j = 1, #nodes do redis.call('%PUBLISH%', topic .. nodes[j], notice) end
      end
    end
  end
  answer[2 * i - 1], answer[2 * i] = previous, id
end
return answer`

/**
 * Registers a node (ARGV[1]) as holding each channel whose registry is in
 * KEYS, for ARGV[2] ms from now (Redis time). Answers per channel 1 if the
 * node was not registered (new, lapsed, or Redis lost it): frames written
 * meanwhile were not announced to it.
 */
const REGISTER_SCRIPT = `
local node, ttl = ARGV[1], tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fresh = {}
for i = 1, #KEYS do
  local expiry = redis.call('HGET', KEYS[i], node)
  redis.call('HSET', KEYS[i], node, string.format('%.0f', now + ttl))
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  if expiry and tonumber(expiry) >= now then fresh[i] = 0 else fresh[i] = 1 end
end
return fresh`

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
 * Stream entries as one string, oldest first: per entry `id SP length SP
 * value` (the entry's frame, field `m`; entries without one are left out).
 * ioredis decodes one bulk string instead of two arrays and three bulk strings
 * per entry: a node reading a 200-frame history spends about a seventh of
 * the CPU (parseStreamPack in entry.ts reads it).
 */
const PACK_ENTRIES = `
local function pack (entries, first, last, step)
  local out = {}
  for i = first, last, step do
    local fields = entries[i][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'm' then
        local value = fields[j + 1]
        out[#out + 1] = entries[i][1] .. ' ' .. #value .. ' '
        out[#out + 1] = value
        break
      end
    end
  end
  return table.concat(out)
end`

/** The newest ARGV[1] entries of a stream, packed oldest first. */
const RECENT_SCRIPT = `${PACK_ENTRIES}
local entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
return pack(entries, #entries, 1, -1)`

/**
 * The entries after a node's cursor (a gap read), and whether Redis trimmed
 * some of them before the node could read them: 1 when the read is as long
 * as the stream keeps, nothing at or before the cursor is left, and the
 * stream has had more entries than it holds; and the stream's newest id
 * ('' if it has none). In one step, so that trimming cannot fall between the
 * read and the check.
 */
const READ_AFTER_SCRIPT = `${PACK_ENTRIES}
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
local last = ''
if #entries > 0 then
  last = entries[#entries][1]
else
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #newest > 0 then last = newest[1][1] end
end
return { trimmed, pack(entries, 1, #entries, 1), last }`

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
  /** `mlesPublish(count, ...streams, maxLength, ttlMs, nodeId, prefixBytes, tagged, ...(flags, entry))`: per frame its predecessor's id and its id, or two empty strings if it was not written. */
  mlesPublish: (...args: Array<string | number | Buffer>) => Promise<string[]>
  /** `mlesRegister(count, ...registries, nodeId, ttlMs)`: per channel 1 if the node was not registered before. */
  mlesRegister: (...args: Array<string | number>) => Promise<number[]>
  mlesRelease: (key: string, token: string) => Promise<number>
  /** `mlesRestore(stream, maxLength, ttlMs, ...entries)` */
  mlesRestore: (...args: Array<string | number | Buffer>) => Promise<number>
  /** `mlesRefresh(count, ...keys, ttlMs, ...tokens)` */
  mlesRefresh: (...args: Array<string | number>) => Promise<number[]>
  /** `mlesReadAfterBuffer(stream, cursor, streamLength)`: [1 if entries were trimmed unread, the entries after the cursor (packed), the stream's newest id or empty] */
  mlesReadAfterBuffer: (stream: string, cursor: string, streamLength: number) => Promise<[number, Buffer, Buffer]>
  /** `mlesRecentBuffer(stream, count)`: the newest `count` entries, packed oldest first */
  mlesRecentBuffer: (stream: string, count: number) => Promise<Buffer>
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

/** A stream entry not applied yet: a notice, one of our frames Redis answered for, or one read from the stream. */
interface Pending {
  id: StreamId
  /** The entry before it in the stream; null for one read from the stream (it follows the one read before). */
  previous: StreamId | null
  /** The entry as stored; for one of ours, `own.entry`. */
  body: Buffer
  /** Our frame, when Redis answered for it (no notice comes for it). */
  own: Outgoing | null
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
  /** Its stream id once Redis wrote it: if it is sent again, Redis does not write it twice. */
  id: string
}

/** This node's view of one channel's stream. */
interface Watch {
  /** The id of the last entry applied; null until the channel was read once (before, frames here are this node's only). */
  cursor: StreamId | null
  /** Entries held back until the stream is read (a read runs, or notices may have been missed); null when they apply at once. */
  held: Pending[] | null
  /** Entries that came while in step, whose predecessor has not been applied yet, by id. */
  waiting: Pending[]
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
   * This node's frames Redis took (the script answered) that are not applied
   * here yet (held, or waiting for their predecessor), by sequence number.
   * Should the connection go now, Redis may lose them (it restarts empty
   * before the other nodes read them): they are kept here and sent again,
   * and whoever has one applies it once.
   */
  taken: Map<number, Outgoing>
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
  /** Bytes of the key prefix. */
  private readonly prefixBytes: number
  /** Bytes of the topic prefix of one Redis: where a notice's channel name starts (our node id ends it). */
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
  /** Bytes of the entries in the watches' `taken`, bounded like the outbox (`outboxBytes`). */
  private takenBytes = 0
  /** Script calls not answered yet, with their frames, by call number (so in the order sent). */
  private readonly inFlightCalls = new Map<number, Outgoing[]>()
  private callSerial = 0
  /**
   * Channels with an entry waiting for its predecessor, and the last call
   * sent when that was seen: once every call up to it is answered (the
   * missing one may be ours) and the notices that came meanwhile are in, a
   * link still missing is read from the stream.
   */
  private readonly gaps = new Map<string, number>()
  private gapCheckScheduled = false
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
    this.commands.defineCommand('mlesRegister', { lua: REGISTER_SCRIPT })
    this.commands.defineCommand('mlesRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT })
    this.commands.defineCommand('mlesRestore', { numberOfKeys: 1, lua: RESTORE_SCRIPT })
    this.commands.defineCommand('mlesRefresh', { lua: REFRESH_SCRIPT })
    this.commands.defineCommand('mlesReadAfter', { numberOfKeys: 1, lua: READ_AFTER_SCRIPT })
    this.commands.defineCommand('mlesRecent', { numberOfKeys: 1, lua: RECENT_SCRIPT })
    this.prefixBytes = Buffer.byteLength(options.keyPrefix)
    this.topicPrefixBytes = this.prefixBytes + 2

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
    return this.keys.topic(channel, this.nodeId)
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
      const frames: Array<{ payload: Buffer, isBinary: boolean }> = []
      parseStreamPack(await this.commands.mlesRecentBuffer(this.streamKey(channel), this.options.historyLimit), (_id, body) => {
        const entry = decodeEntry(body)
        if (entry !== null) frames.push({ payload: entry.payload, isBinary: entry.isBinary })
      })
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
    const item: Outgoing = { channel, payload, isBinary, uid, join, sequence, entry: encodeEntry(this.nodeIdBytes, sequence, uid, join, isBinary, payload), settled: false, serial: ++this.serial, id: '' }
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
    args.push(this.streamLength, this.options.channelIdleMs, this.nodeId, this.prefixBytes, this.sharded ? 1 : 0)
    for (const item of batch) args.push((this.expectsStream(item.channel) ? '1' : '0') + item.id, item.entry)
    const call = ++this.callSerial
    this.inFlightCalls.set(call, batch)
    this.commands.mlesPublish(...args).then((answer) => {
      this.inFlightCalls.delete(call)
      this.inFlight -= batch.length
      this.sendFailing = false
      let skipped: Outgoing[] | null = null
      for (let i = 0; i < batch.length; i++) {
        const item = batch[i]
        const id = answer[2 * i + 1] === '' ? null : StreamId.parse(answer[2 * i + 1])
        if (id === null) {
          (skipped ??= []).push(item)
          continue
        }
        item.id = answer[2 * i + 1]
        this.answered(item, id, StreamId.parse(answer[2 * i]) ?? StreamId.ZERO)
      }
      if (skipped !== null) this.streamsMissing(skipped)
      if (this.gaps.size > 0) this.scheduleGapCheck()
      this.flushOutbox()
    }, (error: unknown) => {
      this.inFlightCalls.delete(call)
      this.inFlight -= batch.length
      this.fault('publishing', error)
      if (!this.sendFailing) {
        this.sendFailing = true
        // Whatever has not gone through is delivered and kept here now, in publishing order.
        this.settlePending(batch)
      }
      // Perhaps written after all (a timeout): sent again, the receivers apply it once.
      this.requeue(batch)
      this.retryLater()
      if (this.gaps.size > 0) this.scheduleGapCheck()
    })
  }

  /** Redis wrote our frame as `id` after `previous`: it takes its place in the channel here, now or once its predecessor is in. */
  private answered (item: Outgoing, id: StreamId, previous: StreamId): void {
    const watch = this.watches.get(item.channel)
    if (watch === undefined) return
    if (this.offer(item.channel, watch, { id, previous, body: item.entry, own: item }) || item.sequence === 0) return
    if (this.takenBytes + item.entry.length > this.options.outboxBytes || watch.taken.has(item.sequence)) return
    watch.taken.set(item.sequence, item)
    this.takenBytes += item.entry.length
  }

  /** Our frame `item` is applied here (or dropped with its channel): no longer kept to be sent again. */
  private forgetTaken (watch: Watch, item: Outgoing): void {
    if (watch.taken.get(item.sequence) !== item) return
    watch.taken.delete(item.sequence)
    this.takenBytes -= item.entry.length
  }

  /**
   * The commands connection went: frames Redis took that are not applied
   * here yet may be lost with it (it restarts empty before the other nodes
   * read them). They are delivered and kept here (if they were not already)
   * and go back into the outbox, in publishing order, ahead of anything
   * published later; Redis does not write one it kept twice, and a receiver
   * applies each once.
   */
  private resendTaken (): void {
    if (this.takenBytes === 0) return
    // Everything older settles first, so that the history keeps publishing order.
    this.settlePending()
    const frames: Outgoing[] = []
    for (const watch of this.watches.values()) {
      for (const item of watch.taken.values()) frames.push(item)
      watch.taken.clear()
    }
    this.takenBytes = 0
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
   * not applied here yet: `also`, those in flight, waiting in the outbox or
   * for the end of this turn, and those Redis took that wait for their
   * predecessor or for a read. A frame settled later is then always a newer one, so this
   * node's history keeps its publishers' order whatever fails first.
   */
  private settlePending (also: Outgoing[] = []): void {
    const pending = [...also, ...this.batch]
    for (const inFlight of this.inFlightCalls.values()) pending.push(...inFlight)
    for (let i = this.outboxHead; i < this.outbox.length; i++) pending.push(this.outbox[i])
    for (const watch of this.watches.values()) {
      for (const item of watch.taken.values()) pending.push(item)
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
    this.gaps.delete(channel)
    for (const item of [...watch.taken.values()]) this.forgetTaken(watch, item)
    this.hub?.drop(channel)
    if (this.commands.status === 'ready') {
      this.commands.hdel(this.keys.registry(channel), this.nodeId).catch((error: unknown) => { this.fault('leaving a channel', error) })
    }
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
    const watch: Watch = { cursor: null, held: null, waiting: [], reading: false, stale: false, ready: Promise.resolve(), admitting: 0, lastSequenceOf: new Map(), settledHere: new Set(), taken: new Map() }
    this.watches.set(channel, watch)
    this.hub?.channelOrCreate(channel)
    watch.ready = this.subscribeAndRead(channel, watch)
    return watch
  }

  /**
   * Subscribes to this node's topic of the channel, then registers the node
   * as holding it, then reads it — in that order, so that every frame is
   * either in the stream when it is read or announced here.
   */
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
    // Not awaited: the read goes after it on the same connection (and slot), so Redis runs them in that order.
    this.register([channel])
    await this.read(channel, watch)
  }

  /**
   * Registers this node as holding `channels` (one script call per slot and
   * thousand): the other nodes announce their frames of them here until the
   * registration lapses (`leaseTtlMs`; renewed by `maintain`). A channel
   * whose registration had lapsed or was lost missed announcements: it is
   * read again.
   */
  private register (channels: string[]): void {
    if (this.commands.status !== 'ready') return
    for (const group of this.bySlot(channels, (channel) => channel).values()) {
      for (let start = 0; start < group.length; start += MAX_BATCH) {
        const part = group.slice(start, start + MAX_BATCH)
        this.commands.mlesRegister(part.length, ...part.map((channel) => this.keys.registry(channel)), this.nodeId, this.options.leaseTtlMs).then((fresh) => {
          let missed = false
          for (let i = 0; i < part.length; i++) {
            const watch = this.watches.get(part[i])
            // A watch still in its first read reads after this anyway.
            if (fresh[i] !== 1 || watch === undefined || watch.cursor === null) continue
            watch.stale = true
            missed = true
          }
          if (missed) this.readStale()
        }, (error: unknown) => {
          this.fault('registering channels', error)
          for (const channel of part) {
            const watch = this.watches.get(channel)
            if (watch !== undefined) watch.stale = true
          }
        })
      }
    }
  }

  /**
   * Reads the channel's stream: its recent history on the first read (into
   * the history only), the entries after the cursor on later ones (delivered,
   * since members have not had them). Entries that arrive meanwhile are held;
   * after the read, every entry that was in the stream when it was read —
   * those read, those waiting for a predecessor before it began, those held
   * that are not newer than the stream's newest — applies in id order (those
   * already applied dropped by id); the newer held ones follow their chain.
   * A failed read keeps them all held: applying them would move the cursor
   * past what was missed.
   */
  private async read (channel: string, watch: Watch): Promise<void> {
    watch.reading = true
    watch.held ??= []
    try {
      for (;;) {
        const initial = watch.cursor === null
        // Came before this read was sent, so written before it runs: the read settles each of them.
        const prior = watch.waiting
        watch.waiting = []
        let packed: Buffer | null = null
        let newest: StreamId | null = null
        let failed = false
        try {
          if (this.commands.status !== 'ready') throw new Error('not connected')
          if (initial) {
            packed = await this.commands.mlesRecentBuffer(this.streamKey(channel), Math.max(1, this.options.historyLimit))
          } else {
            const [trimmed, after, last] = await this.commands.mlesReadAfterBuffer(this.streamKey(channel), String(watch.cursor), this.streamLength)
            packed = after
            newest = last.length === 0 ? null : StreamId.parse(last.toString('latin1'))
            if (trimmed === 1) this.unfilledGap(channel)
          }
        } catch (error) {
          if ((error as Error).message !== 'not connected') this.fault('reading a channel', error)
          failed = true
        }
        if (this.watches.get(channel) !== watch) return
        if (failed) {
          watch.held = [...prior, ...(watch.held ?? [])]
          watch.stale = true
          return
        }
        const settled: Pending[] = prior
        parseStreamPack(packed ?? EMPTY, (id, body) => {
          if (initial) newest = id
          if (initial && this.options.historyLimit === 0) watch.cursor = id
          else if (initial) this.apply(channel, watch, id, body, true)
          else settled.push({ id, previous: null, body, own: null })
        })
        if (initial && watch.cursor === null) watch.cursor = StreamId.ZERO
        const held = watch.held ?? []
        const later: Pending[] = []
        for (const entry of held) {
          if (newest === null || entry.id.isAfter(newest)) later.push(entry)
          else settled.push(entry)
        }
        // Merged by id: a stream trimmed while this node was away still reaches members through
        // the entries it did get, instead of the cursor jumping past them.
        settled.sort(byId)
        for (const entry of settled) this.applyPending(channel, watch, entry)
        if (later.length > MAX_HELD_NOTICES) {
          // Too many entries to hold: the ones let go are in the stream, after the cursor. Read on from there.
          watch.held = []
          continue
        }
        watch.held = watch.stale ? [] : null
        later.sort(byId)
        for (const entry of later) this.offer(channel, watch, entry)
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

  /** A notice on this node's topic of a channel: `previous id entry`. */
  private notice (topic: Buffer, message: Buffer): void {
    const channel = this.sharded ? this.keys.channelOfTopic(topic.toString('utf8')) : topic.toString('utf8', this.topicPrefixBytes, topic.length - NODE_ID_LENGTH - 1)
    const watch = channel === null ? undefined : this.watches.get(channel)
    if (watch === undefined || channel === null) return
    const first = message.indexOf(0x20)
    const second = first > 0 ? message.indexOf(0x20, first + 1) : -1
    const previous = second > 0 ? StreamId.parse(message.toString('latin1', 0, first)) : null
    const id = previous !== null ? StreamId.parse(message.toString('latin1', first + 1, second)) : null
    if (id === null || previous === null) {
      this.metrics.clusterErrors++
      return
    }
    this.offer(channel, watch, { id, previous, body: message.subarray(second + 1), own: null })
  }

  /**
   * An entry that came in step (a notice, or the answer for one of ours):
   * applied now if it follows what was applied, kept until then otherwise;
   * held while the channel is read or out of step. True if it is done with
   * (applied, or had been).
   */
  private offer (channel: string, watch: Watch, entry: Pending): boolean {
    // Notices may have been missed: none applies before the stream is read from the cursor.
    if (watch.held === null && watch.stale) watch.held = []
    if (watch.held !== null) {
      // Past the bound, the rest is read again from the stream once this read is over.
      if (watch.held.length <= MAX_HELD_NOTICES) watch.held.push(entry)
      return false
    }
    const cursor = watch.cursor ?? StreamId.ZERO
    if (!entry.id.isAfter(cursor)) {
      if (entry.own !== null) this.forgetTaken(watch, entry.own)
      return true
    }
    if (entry.previous !== null && entry.previous.isAfter(cursor)) {
      insertById(watch.waiting, entry)
      if (watch.waiting.length > MAX_HELD_NOTICES) {
        // Too many: they are in the stream; read it.
        watch.waiting = []
        watch.stale = true
        this.readStale()
      } else if (!this.gaps.has(channel)) {
        this.gaps.set(channel, this.callSerial)
        this.scheduleGapCheck()
      }
      return false
    }
    this.applyPending(channel, watch, entry)
    // What waited for this one.
    const waiting = watch.waiting
    while (waiting.length > 0 && watch.held === null) {
      const next = waiting[0]
      const at = watch.cursor ?? StreamId.ZERO
      if (next.id.isAfter(at) && next.previous !== null && next.previous.isAfter(at)) break
      waiting.shift()
      this.applyPending(channel, watch, next)
    }
    return true
  }

  private scheduleGapCheck (): void {
    if (this.gapCheckScheduled) return
    this.gapCheckScheduled = true
    // After the I/O of this loop turn: a notice that came with an answer is in by then.
    setImmediate(this.checkGaps)
  }

  /** Reads the channels whose missing link is neither on its way as a notice nor in one of our unanswered calls. */
  private readonly checkGaps = (): void => {
    this.gapCheckScheduled = false
    let oldestCall = Infinity
    for (const call of this.inFlightCalls.keys()) {
      oldestCall = call
      break
    }
    let reads = false
    for (const [channel, lastCall] of this.gaps) {
      const watch = this.watches.get(channel)
      if (watch === undefined || watch.waiting.length === 0 || watch.reading || watch.held !== null) {
        this.gaps.delete(channel)
        continue
      }
      // One of ours sent before may be the missing link: its answer checks again.
      if (oldestCall <= lastCall) continue
      this.gaps.delete(channel)
      this.metrics.clusterGapReads++
      watch.stale = true
      reads = true
    }
    if (reads) this.readStale()
  }

  private applyPending (channel: string, watch: Watch, entry: Pending): void {
    if (entry.own === null) this.apply(channel, watch, entry.id, entry.body, false)
    else this.applyOwn(channel, watch, entry.id, entry.own)
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
    if (entry.origin === this.nodeId && entry.sequence !== 0) {
      const item = watch.taken.get(entry.sequence)
      if (item !== undefined) this.forgetTaken(watch, item)
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

  /** One of our frames in its place in the stream, as Redis answered for it (no need to decode what we encoded). */
  private applyOwn (channel: string, watch: Watch, id: StreamId, item: Outgoing): void {
    this.forgetTaken(watch, item)
    if (watch.cursor !== null && !id.isAfter(watch.cursor)) return
    watch.cursor = id
    const local = this.hub?.channel(channel)
    if (local === undefined || this.hub === null) return
    if (item.sequence !== 0) {
      if (item.sequence <= (watch.lastSequenceOf.get(this.nodeId) ?? 0)) return
      watch.lastSequenceOf.set(this.nodeId, item.sequence)
      if (watch.settledHere.delete(item.sequence)) return
    }
    const payload = Buffer.isBuffer(item.payload) ? item.payload : Buffer.from(item.payload.buffer, item.payload.byteOffset, item.payload.byteLength)
    this.hub.replicated(local, payload, item.isBinary, item.uid, item.join, true, item.sequence)
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
      this.resendTaken()
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
    // Registered again too (Redis may have restarted empty), before the reads.
    this.subscribe(channels).then(() => {
      this.register(channels)
      this.readStale()
    }, (error: unknown) => { this.fault('subscribing again', error) })
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
      this.register(channels)
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
   * Every third of the lease time: renews our uid leases and the channels'
   * registrations (one script call per thousand, per slot on a Redis
   * Cluster), restores the history of channels whose leases Redis had lost,
   * and retries reads that failed.
   */
  private maintain (): void {
    if (this.closed || this.commands.status !== 'ready') return
    for (const group of this.bySlot([...this.leases], (lease) => lease.channel).values()) {
      for (let start = 0; start < group.length; start += MAX_BATCH) this.renew(group.slice(start, start + MAX_BATCH))
    }
    if (this.watches.size > 0) this.register([...this.watches.keys()])
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
      await Promise.allSettled([
        ...[...this.leases].map(async (lease) => await this.commands.mlesRelease(this.leaseKey(lease.channel, lease.uid), lease.token)),
        // The other nodes stop announcing frames here.
        ...[...this.watches.keys()].map(async (channel) => await this.commands.hdel(this.keys.registry(channel), this.nodeId))
      ])
    }
    this.leases.clear()
    this.closed = true
    await Promise.allSettled([quit(this.commands), quit(this.subscriber)])
  }
}

function byId (x: Pending, y: Pending): number {
  return x.id.isAfter(y.id) ? 1 : y.id.isAfter(x.id) ? -1 : 0
}

/** Inserts into a list kept in id order (entries mostly come in order: from the end). */
function insertById (list: Pending[], entry: Pending): void {
  let at = list.length
  while (at > 0 && list[at - 1].id.isAfter(entry.id)) at--
  list.splice(at, 0, entry)
}

const EMPTY = Buffer.alloc(0)

async function quit (connection: RedisConnection): Promise<void> {
  if (connection.status === 'ready') {
    try {
      await connection.quit()
      return
    } catch {}
  }
  connection.disconnect()
}
