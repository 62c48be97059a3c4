import { createHash } from 'node:crypto'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { ResolvedRedisOptions } from '../options.js'

/** A connection to one Redis or to a Redis Cluster. */
export type RedisConnection = Redis | Cluster

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

/** Where the engine connects, for messages: the URL, or the cluster's seed URLs. */
export function describeRedis (options: ResolvedRedisOptions): string {
  return options.cluster === undefined ? redactRedisUrl(options.url ?? '') : `the Redis Cluster at ${options.cluster.map(redactRedisUrl).join(', ')}`
}

/**
 * Opens a connection, not yet connected (`lazyConnect`), to the Redis or the
 * Redis Cluster the options name. `node` holds the settings of each
 * connection to a server; for a cluster, what the seed URLs carry besides
 * host and port (user, password, TLS) applies to every node found.
 */
export function openRedis (options: ResolvedRedisOptions, node: RedisOptions, cluster: Omit<ClusterOptions, 'redisOptions'> = {}): RedisConnection {
  if (options.cluster === undefined) return new Redis(options.url ?? '', { ...node, lazyConnect: true })
  const seed = new URL(options.cluster[0])
  const credentials: RedisOptions = {}
  if (seed.username !== '') credentials.username = decodeURIComponent(seed.username)
  if (seed.password !== '') credentials.password = decodeURIComponent(seed.password)
  if (seed.protocol === 'rediss:') credentials.tls = {}
  return new Cluster(options.cluster.map((url) => {
    const parsed = new URL(url)
    return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port === '' ? 6379 : Number(parsed.port) }
  }), {
    ...cluster,
    lazyConnect: true,
    enableOfflineQueue: node.enableOfflineQueue,
    enableAutoPipelining: node.enableAutoPipelining,
    maxRedirections: 16,
    clusterRetryStrategy: typeof node.retryStrategy === 'function' ? node.retryStrategy : undefined,
    redisOptions: { ...node, ...credentials }
  })
}

/**
 * Names the keys of a channel. With one Redis, `prefix` + `h:` + channel
 * (and `p:`, `u:`), as ever; with a Redis Cluster, a hash tag of the channel
 * follows the prefix so that all its keys and its shard channel share one
 * slot: `prefix{channel}h:channel`. A channel name holding `}` (which would
 * end the tag early) or empty is tagged with a hash of itself instead.
 */
export class KeyLayout {
  constructor (private readonly prefix: string, readonly cluster: boolean) {}

  /** What comes before a channel's own key names. */
  private channelPrefix (channel: string): string {
    if (!this.cluster) return this.prefix
    const tag = channel !== '' && !channel.includes('}') ? channel : '#' + createHash('sha1').update(channel).digest('hex').slice(0, 16)
    return `${this.prefix}{${tag}}`
  }

  /** The stream holding the channel's history. */
  stream (channel: string): string {
    return this.channelPrefix(channel) + 'h:' + channel
  }

  /** The pub/sub (shard) channel announcing its new entries. */
  topic (channel: string): string {
    return this.channelPrefix(channel) + 'p:' + channel
  }

  /** The channel a topic announces, or null if it is none of ours. */
  channelOfTopic (topic: string): string | null {
    if (!topic.startsWith(this.prefix)) return null
    let at = this.prefix.length
    if (this.cluster) {
      // The tag holds no '}': the first one ends it.
      const close = topic.indexOf('}', at)
      if (topic[at] !== '{' || close === -1) return null
      at = close + 1
    }
    return topic.startsWith('p:', at) ? topic.slice(at + 2) : null
  }

  /** The key of a uid lease; `lease(channel, '')` is the prefix of all the channel's. */
  lease (channel: string, uid: string): string {
    return `${this.channelPrefix(channel)}u:${Buffer.byteLength(channel)}:${channel}:${uid}`
  }

  /** The hash slot of a channel's keys (0 with one Redis). */
  slot (channel: string): number {
    return this.cluster ? calculateSlot(this.stream(channel)) : 0
  }
}
