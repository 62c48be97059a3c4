import { createHash } from 'node:crypto'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { ResolvedRedisOptions } from '../options.js'

/** The length of a node id (a UUID), which ends each node's topic names. */
export const NODE_ID_LENGTH = 36

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

/** Where the engine connects, for messages: the URL, the cluster's seed URLs, or the Sentinels and the master's name. */
export function describeRedis (options: ResolvedRedisOptions): string {
  if (options.cluster !== undefined) return `the Redis Cluster at ${options.cluster.map(redactRedisUrl).join(', ')}`
  if (options.sentinels !== undefined) return `the Redis master ${JSON.stringify(options.masterName)} of the Sentinels at ${options.sentinels.map(redactRedisUrl).join(', ')}`
  return redactRedisUrl(options.url ?? '')
}

/** What a seed URL carries besides host and port: user, password, TLS. */
function credentialsOf (url: string): { username?: string, password?: string, tls: boolean } {
  const seed = new URL(url)
  return {
    ...(seed.username === '' ? {} : { username: decodeURIComponent(seed.username) }),
    ...(seed.password === '' ? {} : { password: decodeURIComponent(seed.password) }),
    tls: seed.protocol === 'rediss:'
  }
}

function hostAndPort (url: string, defaultPort: number): { host: string, port: number } {
  const parsed = new URL(url)
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port === '' ? defaultPort : Number(parsed.port) }
}

/**
 * Opens a connection, not yet connected (`lazyConnect`), to the Redis, the
 * Redis Cluster or the Sentinel-watched master the options name. `node` holds
 * the settings of each connection to a server; for a cluster or Sentinels,
 * what the first URL carries besides host and port (user, password, TLS)
 * applies to every server found.
 */
export function openRedis (options: ResolvedRedisOptions, node: RedisOptions, cluster: Omit<ClusterOptions, 'redisOptions'> = {}): RedisConnection {
  if (options.sentinels !== undefined) {
    const { username, password, tls } = credentialsOf(options.sentinels[0])
    return new Redis({
      ...node,
      lazyConnect: true,
      sentinels: options.sentinels.map((url) => hostAndPort(url, 26379)),
      name: options.masterName,
      ...(username === undefined ? {} : { username, sentinelUsername: username }),
      ...(password === undefined ? {} : { password, sentinelPassword: password }),
      ...(tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      // After a failover the old master, if it is still up, turns replica and refuses writes: connect
      // again, to the master the Sentinels name now. The failed command fails (the engine sends its
      // frames again); a connection that closes asks the Sentinels anyway.
      reconnectOnError: (error) => error.message.startsWith('READONLY')
    })
  }
  if (options.cluster === undefined) return new Redis(options.url ?? '', { ...node, lazyConnect: true })
  const { username, password, tls } = credentialsOf(options.cluster[0])
  const credentials: RedisOptions = {
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(tls ? { tls: {} } : {})
  }
  return new Cluster(options.cluster.map((url) => hostAndPort(url, 6379)), {
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
 * (and `n:` topics, `r:` registry, `u:` leases); with a Redis Cluster, a hash tag of the channel
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

  /**
   * What every node's topic of the channel starts with; the node's id
   * follows (`NODE_ID_LENGTH` characters). Each node subscribes to its own,
   * and a frame is announced to the topics of the other nodes holding the
   * channel only, so no node gets its own frames back.
   */
  topicBase (channel: string): string {
    return this.channelPrefix(channel) + 'n:' + channel + ':'
  }

  /** The pub/sub (shard) channel announcing the channel's new entries to `node`. */
  topic (channel: string, node: string): string {
    return this.topicBase(channel) + node
  }

  /** The hash of the nodes holding the channel: node id → until when (Redis time, ms), renewed while they hold it. */
  registry (channel: string): string {
    return this.channelPrefix(channel) + 'r:' + channel
  }

  /** The channel a node's topic announces, or null if it is none of ours. */
  channelOfTopic (topic: string): string | null {
    if (!topic.startsWith(this.prefix)) return null
    let at = this.prefix.length
    if (this.cluster) {
      // The tag holds no '}': the first one ends it.
      const close = topic.indexOf('}', at)
      if (topic[at] !== '{' || close === -1) return null
      at = close + 1
    }
    const end = topic.length - NODE_ID_LENGTH - 1
    return topic.startsWith('n:', at) && end >= at + 2 && topic[end] === ':' ? topic.slice(at + 2, end) : null
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
