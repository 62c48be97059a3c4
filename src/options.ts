import type { FastifyRequest } from 'fastify'

/** What `authorize` is asked about: the join frame's uid and channel, after its SipHash check. */
export interface MlesJoinRequest {
  readonly uid: string
  readonly channel: string
}

/**
 * The answer of `authorize`: `true` admits the member, `false` refuses it
 * (close 1008 "forbidden"); an object admits it with conditions — `uid` is the
 * only uid it may join as (another closes 1008 "uid not allowed"), and
 * `publish: false` makes it a read-only member.
 */
export type MlesAuthorization = boolean | { readonly uid?: string, readonly publish?: boolean }

/**
 * Decides a join by the app's own rules, once per connection, before the
 * member enters the channel or sees its history. `request` is the upgrade's
 * Fastify request, with whatever the app's hooks put on it (`request.user`,
 * `request.session`, cookies). A throw or rejection closes the connection with
 * 1011 and is logged.
 */
export type MlesAuthorize = (request: FastifyRequest, join: MlesJoinRequest) => MlesAuthorization | Promise<MlesAuthorization>

/** Decides whether a browser's `Origin` may open a connection; `origin` is the header as sent. */
export type MlesOriginCheck = (origin: string, request: FastifyRequest) => boolean | Promise<boolean>

/** The HTTP API for backends (option `api`). */
export interface MlesHttpApiOptions {
  /** Bearer key every request must carry (`Authorization: Bearer <key>`); at least 16 characters. */
  key: string
  /** URL prefix of the routes. Default `'/_mles/api'`. */
  prefix?: string
}

/** Options of `app.register(mles, options)`. Every field is optional. */
export interface MlesOptions {
  /** URL path of the WebSocket endpoint. Plain GETs on it still reach the app's own routes. Default `'/'`. */
  path?: string
  /** Shared secret for SipHash authentication (SPEC §3). Default: env `MLES_KEY`, else none (auth optional). */
  key?: string
  /** Frames kept per channel, join frames included; 0 keeps none. Default 200 (CLI `--limit`). */
  historyLimit?: number
  /** Bytes kept per channel; the oldest frames go first. Default 10 MiB. */
  historyMaxBytes?: number
  /**
   * Bytes of history kept over all channels together. Past it, the history of
   * the least recently active channels goes first — channels without members
   * before channels with members, which keep at least their share of it — and
   * every frame evicted is counted (`history_evicted_frames`). 0 = no bound
   * (not for a public server). Default 256 MiB, or `historyMaxBytes` if larger.
   */
  historyTotalBytes?: number
  /** A channel with no members and no activity for this long is forgotten with its history. Default 30 days. */
  channelIdleMs?: number
  /** Frames larger than this are dropped, not forwarded; the connection stays. Also the largest join frame. Default 1 MiB. */
  maxMessageBytes?: number
  /** Frames larger than this close the connection with 1009 before being buffered whole. Default 8 MiB, at least `maxMessageBytes`. */
  maxFrameBytes?: number
  /** Frames per second a connection may publish; the excess is dropped and counted. 0 = no limit. Default 100. */
  messagesPerSecond?: number
  /** Interval between pings to every client. 0 = no keep-alive. Default 24 000 ms. */
  pingIntervalMs?: number
  /** A client that leaves this many pings in a row unanswered is closed. Default 3. */
  maxMissedPongs?: number
  /** Time a new connection has to send its join frame. Default 30 000 ms. */
  joinTimeoutMs?: number
  /** Upgrades allowed per source IP per `perIpWindowMs`; more are refused with 429. 0 = no limit. Default 60. */
  perIpLimit?: number
  /** The per-IP window. Default 60 000 ms. */
  perIpWindowMs?: number
  /**
   * Channels one source address may create per `perIpWindowMs`; a join that
   * would create one more is closed with 1013 "too many new channels".
   * Joining an existing channel is not counted. 0 = no limit. Default 30.
   */
  perIpChannelLimit?: number
  /**
   * How much of an IPv6 address the per-IP limits key on: 64 counts a whole
   * /64 (what one subscriber usually holds) as one address; 128 counts each
   * address. IPv4 (and IPv4-mapped IPv6) always counts per address. Default 64.
   */
  ipv6PrefixLength?: number
  /**
   * Connections held at once (WebSocket and v1); an upgrade past it is refused
   * with 503 and `Retry-After`. 0 = no limit. Default 65 536.
   */
  maxConnections?: number
  /**
   * Channels held at once. When a join would create one past it, the least
   * recently active channel without members is forgotten (history and all) to
   * make room; if every channel has members, the join is closed with 1013
   * "too many channels". Channels the app makes (`subscribe`, `publish`) are
   * never refused. 0 = no limit. Default 100 000.
   */
  maxChannels?: number
  /**
   * Unsent bytes a member may have queued from earlier event-loop turns before
   * it is disconnected as a slow consumer (close 1008 "slow consumer"). The
   * history replayed at join is allowed on top. Default 4 MiB, at least
   * `maxMessageBytes`.
   */
  maxBufferedBytes?: number
  /**
   * Runs this endpoint as one node of a cluster joined through Redis: a Redis
   * URL (`redis://[:password@]host[:port][/db]`, `rediss://` for TLS),
   * `{ url, ... }` for the finer settings, or `{ cluster: [urls], ... }` for a
   * Redis Cluster. Channels, history and uids then span every node using the
   * same Redis and `keyPrefix`. Default: none (one node).
   */
  redis?: string | MlesRedisOptions
  /**
   * Also accept clients of the legacy v1 TCP protocol (SPEC-v1) on this port,
   * in the same channels as the WebSocket clients. `key` is their shared key
   * (MLES_KEY); without it, keys are checked in address mode. Default: off.
   */
  v1?: MlesV1Options
  /**
   * Keeps channel history on disk in this directory (an LMDB database,
   * created if missing), so a restart loses none of it. Default: none
   * (history in memory only).
   */
  historyDir?: string
  /**
   * With `historyDir`: how often frames are written to disk. A crash (not a
   * clean close) may lose about this much. Default 1000 ms.
   */
  historyFlushMs?: number
  /**
   * Decides every WebSocket join by the app's rules (its login, its session):
   * see `MlesAuthorize`. v1 TCP clients are not asked (they have no HTTP
   * request). Default: none (every join with a valid header and key enters).
   */
  authorize?: MlesAuthorize
  /** How long `authorize` may take; past it the join is refused with 1008 "authorization timeout". Default 5000 ms. */
  authorizeTimeoutMs?: number
  /**
   * Browser origins allowed to open a connection, as `scheme://host[:port]`
   * (`'*'` allows any), or a function deciding. An upgrade from another
   * origin is refused with 403 before it becomes a WebSocket. Requests without
   * `Origin` (non-browser clients) pass unless `requireOrigin`. Default: every
   * origin — set it whenever members are recognised by cookies.
   */
  allowedOrigins?: readonly string[] | MlesOriginCheck
  /** Refuse upgrades that carry no `Origin` header (403). Default false. */
  requireOrigin?: boolean
  /** An HTTP API for backends in any language: publish, channels, history, members. Default: off. */
  api?: MlesHttpApiOptions
}

/** The v1 TCP listener (option `v1`, SPEC-v1). */
export interface MlesV1Options {
  /** TCP port; the IANA port of Mles is 8077. 0 picks a free one (see `app.mles.v1Address()`). */
  port: number
  /** Address to listen on. Default `'::'` (every address, IPv6 and IPv4). */
  host?: string
  /** `MLES_ADDR_KEY` of the reference: hashed after the client's address in address mode. Default: env `MLES_ADDR_KEY`. Ignored with `key`. */
  addressKey?: string
  /** A v1 server (`HOST[:PORT]`, port 8077 by default) to link every channel with local members to, as a v1 client. */
  peer?: string
  /** First wait before a lost peer link is tried again, doubling each time up to `peerRetryMaxMs`. Default 5000 and 600 000, as the reference. */
  peerRetryMinMs?: number
  peerRetryMaxMs?: number
  /**
   * Also accept v1 clients over WebSocket at this path, as the reference's
   * proxy does (`mles-client --use-websockets`): subprotocol `mles-websocket`,
   * each message a bare CBOR `Msg`, in the same channels. Must differ from
   * `path`. Default: none.
   */
  webSocketPath?: string
}

/**
 * The Redis engine's settings (option `redis`): `url` for one Redis,
 * `cluster` for a Redis Cluster, or `sentinels` and `masterName` for a Redis
 * watched by Sentinel.
 */
export type MlesRedisOptions = MlesRedisSettings & ({
  /** `redis://` or `rediss://` URL of one Redis. */
  url: string
  cluster?: undefined
  sentinels?: undefined
} | {
  /**
   * Redis Cluster: `redis://` or `rediss://` URLs of some of its masters (the
   * rest are discovered). Each channel's keys then share one hash slot.
   */
  cluster: readonly string[]
  url?: undefined
  sentinels?: undefined
} | {
  /**
   * Redis Sentinel: `redis://` or `rediss://` URLs of some of the Sentinels
   * (port 26379 by default); the engine asks them for the master of
   * `masterName`, and again after a failover. A user and password in the
   * first URL, or `rediss://`, apply to the Sentinels and to the master.
   */
  sentinels: readonly string[]
  /** The name the Sentinels monitor the master under (`sentinel monitor <name> …`). */
  masterName: string
  url?: undefined
  cluster?: undefined
})

/** The settings of the Redis engine that do not name the server. */
export interface MlesRedisSettings {
  /** Prefix of every key and pub/sub channel used; nodes sharing it share channels. Default `'mles:'`. With `cluster`, no braces. */
  keyPrefix?: string
  /**
   * How long a crashed node's uids stay taken, and how long its registrations
   * as holding channels last (the other nodes announce frames to it until
   * then); both renewed every third of it. Default 15 000 ms.
   */
  leaseTtlMs?: number
  /** How long `app.register` waits for Redis before failing. Default 5000 ms. */
  connectTimeoutMs?: number
  /**
   * Bytes of frames this node keeps for Redis while it is unreachable; they
   * are written, in order, once it is back. Past it the oldest are dropped
   * (counted as `cluster_dropped_frames`). Default 64 MiB.
   */
  outboxBytes?: number
  /**
   * Frames a channel's stream keeps in Redis beyond `historyLimit`: what a
   * node whose connection was cut (a Redis restart, a network blip) catches
   * up from — another node's outbox included, which arrives all at once. A
   * node that missed more than `historyLimit + catchUpFrames` frames of a
   * channel loses the oldest of them (counted as `cluster_unfilled_gaps`,
   * logged). Redis holds up to this many more entries per active channel.
   * Default 10 000.
   */
  catchUpFrames?: number
}

/** The Redis engine's settings after defaults: exactly one of `url`, `cluster` and `sentinels` (with `masterName`). */
export interface ResolvedRedisOptions extends Required<MlesRedisSettings> {
  url: string | undefined
  cluster: string[] | undefined
  sentinels: string[] | undefined
  masterName: string | undefined
}

/** Options after defaults, validated. */
export interface ResolvedOptions {
  path: string
  key: string | undefined
  historyLimit: number
  historyMaxBytes: number
  historyTotalBytes: number
  channelIdleMs: number
  maxMessageBytes: number
  maxFrameBytes: number
  messagesPerSecond: number
  pingIntervalMs: number
  maxMissedPongs: number
  joinTimeoutMs: number
  perIpLimit: number
  perIpWindowMs: number
  perIpChannelLimit: number
  ipv6PrefixLength: number
  maxConnections: number
  maxChannels: number
  maxBufferedBytes: number
  redis: ResolvedRedisOptions | undefined
  v1: { port: number, host: string, addressKey: string | undefined, peer: { host: string, port: number, retryMinMs: number, retryMaxMs: number } | undefined, webSocketPath: string | undefined } | undefined
  historyDir: string | undefined
  historyFlushMs: number
  authorize: MlesAuthorize | undefined
  authorizeTimeoutMs: number
  /** Normalised origins (lower-case, default port dropped), `null` for any, or the app's check. */
  allowedOrigins: ReadonlySet<string> | MlesOriginCheck | null
  requireOrigin: boolean
  api: Required<MlesHttpApiOptions> | undefined
}

const MiB = 1024 * 1024
const DAY_MS = 24 * 60 * 60 * 1000
/** The longest delay Node's timers accept. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Options that are not integers, and so have no range. */
type NonIntegerOption = 'path' | 'key' | 'redis' | 'historyDir' | 'v1' | 'authorize' | 'allowedOrigins' | 'requireOrigin' | 'api'

export const DEFAULT_OPTIONS: Readonly<Omit<ResolvedOptions, Exclude<NonIntegerOption, 'path' | 'requireOrigin'>>> = Object.freeze({
  path: '/',
  historyLimit: 200,
  historyMaxBytes: 10 * MiB,
  historyTotalBytes: 256 * MiB,
  channelIdleMs: 30 * DAY_MS,
  maxMessageBytes: MiB,
  maxFrameBytes: 8 * MiB,
  messagesPerSecond: 100,
  pingIntervalMs: 24_000,
  maxMissedPongs: 3,
  joinTimeoutMs: 30_000,
  perIpLimit: 60,
  perIpWindowMs: 60_000,
  perIpChannelLimit: 30,
  ipv6PrefixLength: 64,
  maxConnections: 65_536,
  maxChannels: 100_000,
  maxBufferedBytes: 4 * MiB,
  historyFlushMs: 1000,
  authorizeTimeoutMs: 5000,
  requireOrigin: false
})

/** Integer options and their accepted ranges. */
const INTEGER_RANGES: Record<Exclude<keyof ResolvedOptions, NonIntegerOption>, readonly [number, number]> = {
  historyLimit: [0, 1_000_000],
  historyMaxBytes: [0, Number.MAX_SAFE_INTEGER],
  historyTotalBytes: [0, Number.MAX_SAFE_INTEGER],
  channelIdleMs: [1, 100 * 365 * DAY_MS],
  maxMessageBytes: [1, 1024 * MiB],
  maxFrameBytes: [1, 1024 * MiB],
  messagesPerSecond: [0, 1_000_000_000],
  pingIntervalMs: [0, MAX_TIMER_MS],
  maxMissedPongs: [1, 1_000_000],
  joinTimeoutMs: [1, MAX_TIMER_MS],
  perIpLimit: [0, 1_000_000_000],
  perIpWindowMs: [1, MAX_TIMER_MS],
  perIpChannelLimit: [0, 1_000_000_000],
  ipv6PrefixLength: [1, 128],
  maxConnections: [0, 1_000_000_000],
  maxChannels: [0, 1_000_000_000],
  maxBufferedBytes: [1, Number.MAX_SAFE_INTEGER],
  historyFlushMs: [1, MAX_TIMER_MS],
  authorizeTimeoutMs: [1, MAX_TIMER_MS]
}

/** Keys Fastify itself accepts in any plugin's register options. */
const FASTIFY_REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

/** A plugin option outside its accepted range; thrown by `app.register`. */
export class MlesOptionError extends Error {
  readonly code = 'FST_MLES_INVALID_OPTION'
  constructor (readonly option: string, message: string) {
    super(`fastify-mles: option "${option}" ${message}`)
    this.name = 'MlesOptionError'
  }
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`
}

function integerOption (name: keyof typeof INTEGER_RANGES, value: unknown): number {
  const [min, max] = INTEGER_RANGES[name]
  if (value === undefined) return DEFAULT_OPTIONS[name]
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MlesOptionError(name, `must be an integer from ${min} to ${max} (got ${describe(value)})`)
  }
  return value
}

const REDIS_KEYS = ['url', 'cluster', 'sentinels', 'masterName', 'keyPrefix', 'leaseTtlMs', 'connectTimeoutMs', 'outboxBytes', 'catchUpFrames']

/** Whether `value` is a redis:// or rediss:// URL. */
function isRedisUrl (value: unknown): value is string {
  if (typeof value !== 'string') return false
  try {
    const scheme = new URL(value).protocol
    return scheme === 'redis:' || scheme === 'rediss:'
  } catch {
    return false
  }
}

function redisOption (value: unknown): ResolvedRedisOptions | undefined {
  if (value === undefined) return undefined
  const given = (typeof value === 'string' ? { url: value } : value) as Record<string, unknown>
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new MlesOptionError('redis', `must be a redis:// URL, { url, ... }, { cluster: [urls], ... } or { sentinels: [urls], masterName, ... } (got ${describe(value)})`)
  }
  for (const name of Object.keys(given)) {
    if (!REDIS_KEYS.includes(name)) throw new MlesOptionError(`redis.${name}`, `is not a setting of the Redis engine; known: ${REDIS_KEYS.join(', ')}`)
  }
  const servers = (['url', 'cluster', 'sentinels'] as const).filter((name) => given[name] !== undefined)
  if (servers.length > 1) throw new MlesOptionError('redis', `takes one of url (one Redis), cluster (a Redis Cluster) and sentinels (Redis Sentinel), not ${servers.join(' and ')}`)
  const urlList = (name: 'cluster' | 'sentinels', what: string): string[] => {
    const urls = given[name]
    if (!Array.isArray(urls) || urls.length === 0) {
      throw new MlesOptionError(`redis.${name}`, `must be a non-empty array of redis:// or rediss:// URLs of ${what} (got ${describe(urls)})`)
    }
    for (const url of urls) {
      if (!isRedisUrl(url)) throw new MlesOptionError(`redis.${name}`, `must hold redis:// or rediss:// URLs (got ${describe(url)})`)
    }
    const schemes = new Set(urls.map((url: string) => new URL(url).protocol))
    if (schemes.size > 1) throw new MlesOptionError(`redis.${name}`, `mixes redis:// and rediss://: the ${what} are reached the same way`)
    return [...urls as string[]]
  }
  let cluster: string[] | undefined
  let sentinels: string[] | undefined
  let masterName: string | undefined
  if (given.cluster !== undefined) {
    cluster = urlList('cluster', 'cluster masters')
  } else if (given.sentinels !== undefined) {
    sentinels = urlList('sentinels', 'Sentinels')
    if (typeof given.masterName !== 'string' || given.masterName === '') {
      throw new MlesOptionError('redis.masterName', `must name the master the Sentinels monitor, e.g. 'mymaster' (got ${describe(given.masterName)})`)
    }
    masterName = given.masterName
  } else if (!isRedisUrl(given.url)) {
    throw new MlesOptionError('redis.url', `must be a redis:// or rediss:// URL (got ${describe(given.url)})`)
  }
  if (given.masterName !== undefined && sentinels === undefined) throw new MlesOptionError('redis.masterName', 'goes with sentinels only')
  const keyPrefix = given.keyPrefix ?? 'mles:'
  if (typeof keyPrefix !== 'string') throw new MlesOptionError('redis.keyPrefix', `must be a string (got ${describe(keyPrefix)})`)
  if (cluster !== undefined && /[{}]/.test(keyPrefix)) {
    throw new MlesOptionError('redis.keyPrefix', `must not contain braces with cluster: each channel's keys get their own hash tag (got ${describe(keyPrefix)})`)
  }
  const integer = (name: string, fallback: number, min: number, max = MAX_TIMER_MS): number => {
    const setting = given[name] ?? fallback
    if (typeof setting !== 'number' || !Number.isInteger(setting) || setting < min || setting > max) {
      throw new MlesOptionError(`redis.${name}`, `must be an integer from ${min} to ${max} (got ${describe(setting)})`)
    }
    return setting
  }
  return {
    url: cluster === undefined && sentinels === undefined ? given.url as string : undefined,
    cluster,
    sentinels,
    masterName,
    keyPrefix,
    leaseTtlMs: integer('leaseTtlMs', 15_000, 30),
    connectTimeoutMs: integer('connectTimeoutMs', 5000, 1),
    outboxBytes: integer('outboxBytes', 64 * MiB, 0, Number.MAX_SAFE_INTEGER),
    catchUpFrames: integer('catchUpFrames', 10_000, 0, 1_000_000)
  }
}

/**
 * Parses `HOST[:PORT]` (IPv6 in brackets); the port defaults to 8077, as in
 * the reference (option `v1.peer`, `--v1-peer`, `mles-client --v1`), or to
 * `defaultPort`; null when the port is required (`defaultPort` null) and missing.
 * `lowestPort` 0 accepts port 0 (a listener's "any free port").
 */
export function parsePeerAddress (value: string, defaultPort: number | null = 8077, lowestPort = 1): { host: string, port: number } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+))(?::(\d{1,5}))?$/.exec(value)
  if (match === null) return null
  if (match[3] === undefined && defaultPort === null) return null
  const port = match[3] === undefined ? defaultPort as number : Number(match[3])
  if (port < lowestPort || port > 65535) return null
  return { host: match[1] ?? match[2], port }
}

function v1Option (value: unknown, env: Record<string, string | undefined>): ResolvedOptions['v1'] {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MlesOptionError('v1', `must be { port, host?, addressKey? } (got ${describe(value)})`)
  }
  const given = value as Record<string, unknown>
  for (const name of Object.keys(given)) {
    if (!V1_KEYS.includes(name)) throw new MlesOptionError(`v1.${name}`, `is not a setting of the v1 listener; known: ${V1_KEYS.join(', ')}`)
  }
  const port = given.port
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new MlesOptionError('v1.port', `must be an integer from 0 to 65535 (got ${describe(port)})`)
  }
  const host = given.host ?? '::'
  if (typeof host !== 'string' || host === '') throw new MlesOptionError('v1.host', `must be an address (got ${describe(host)})`)
  const addressKey = given.addressKey ?? env.MLES_ADDR_KEY
  if (addressKey !== undefined && typeof addressKey !== 'string') throw new MlesOptionError('v1.addressKey', `must be a string (got ${describe(addressKey)})`)
  let peer: NonNullable<ResolvedOptions['v1']>['peer']
  if (given.peer !== undefined) {
    const address = typeof given.peer === 'string' ? parsePeerAddress(given.peer) : null
    if (address === null) throw new MlesOptionError('v1.peer', `must be HOST or HOST:PORT, an IPv6 address in brackets (got ${describe(given.peer)})`)
    const retry = (name: string, fallback: number): number => {
      const value = given[name] ?? fallback
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_TIMER_MS) {
        throw new MlesOptionError(`v1.${name}`, `must be an integer from 1 to ${MAX_TIMER_MS} (got ${describe(value)})`)
      }
      return value
    }
    peer = { ...address, retryMinMs: retry('peerRetryMinMs', 5000), retryMaxMs: retry('peerRetryMaxMs', 600_000) }
  }
  const webSocketPath = given.webSocketPath
  if (webSocketPath !== undefined && !isUrlPath(webSocketPath)) {
    throw new MlesOptionError('v1.webSocketPath', `must be a URL path starting with "/" without query, fragment or spaces (got ${describe(webSocketPath)})`)
  }
  return { port, host, addressKey: addressKey === '' ? undefined : addressKey, peer, webSocketPath }
}

const V1_KEYS = ['port', 'host', 'addressKey', 'peer', 'peerRetryMinMs', 'peerRetryMaxMs', 'webSocketPath']

/** A path a route can take: starts with "/", no query, fragment or spaces. */
function isUrlPath (value: unknown): value is string {
  return typeof value === 'string' && value.startsWith('/') && !/[\s?#]/.test(value)
}

function historyDirOption (value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0) {
    throw new MlesOptionError('historyDir', `must be a non-empty directory path (got ${describe(value)})`)
  }
  return value
}

/**
 * The form an origin is compared in: `scheme://host[:port]`, lower-case,
 * without the scheme's default port. Null for what is not an origin
 * (`null`, a path, a scheme other than http(s)/ws(s)).
 */
export function normalizeOrigin (origin: string): string | null {
  // An Origin header is exactly scheme://host[:port] (RFC 6454); anything more is not one.
  if (!/^https?:\/\/[^/?#@\s]+\/?$/i.test(origin)) return null
  try {
    const url = new URL(origin)
    return `${url.protocol}//${url.host}`
  } catch {
    return null
  }
}

function allowedOriginsOption (value: unknown): ResolvedOptions['allowedOrigins'] {
  if (value === undefined) return null
  if (typeof value === 'function') return value as MlesOriginCheck
  if (!Array.isArray(value)) {
    throw new MlesOptionError('allowedOrigins', `must be an array of origins or a function (origin, request) => boolean (got ${describe(value)})`)
  }
  const origins = new Set<string>()
  for (const entry of value as unknown[]) {
    if (entry === '*') return null
    const origin = typeof entry === 'string' ? normalizeOrigin(entry) : null
    if (origin === null) throw new MlesOptionError('allowedOrigins', `must hold origins like "https://example.com" or "http://localhost:3000", or "*" (got ${describe(entry)})`)
    origins.add(origin)
  }
  return origins
}

const API_KEYS = ['key', 'prefix']

function apiOption (value: unknown): ResolvedOptions['api'] {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MlesOptionError('api', `must be { key, prefix? } (got ${describe(value)})`)
  }
  const given = value as Record<string, unknown>
  for (const name of Object.keys(given)) {
    if (!API_KEYS.includes(name)) throw new MlesOptionError(`api.${name}`, `is not a setting of the HTTP API; known: ${API_KEYS.join(', ')}`)
  }
  if (typeof given.key !== 'string' || given.key.length < 16 || /\s/.test(given.key)) {
    throw new MlesOptionError('api.key', `must be a string of at least 16 characters without spaces (got ${typeof given.key === 'string' ? `${given.key.length} characters` : describe(given.key)})`)
  }
  const prefix = given.prefix ?? '/_mles/api'
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/') || /[\s?#:*]/.test(prefix)) {
    throw new MlesOptionError('api.prefix', `must be a URL path starting with "/", not ending with one, without query, fragment, spaces, ":" or "*" (got ${describe(prefix)})`)
  }
  return { key: given.key, prefix }
}

/** Applies defaults and validates; throws `MlesOptionError` naming the first bad option and its accepted range. */
export function resolveOptions (options: MlesOptions | undefined, env: Record<string, string | undefined> = process.env): ResolvedOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new MlesOptionError('options', `must be an object (got ${describe(options)})`)
  }
  const given = (options ?? {}) as Record<string, unknown>
  const known = new Set<string>(['path', 'key', ...Object.keys(INTEGER_RANGES), 'redis', 'historyDir', 'v1', 'authorize', 'allowedOrigins', 'requireOrigin', 'api'])
  for (const name of Object.keys(given)) {
    if (!known.has(name) && !FASTIFY_REGISTER_KEYS.has(name)) {
      throw new MlesOptionError(name, `is not an option of fastify-mles; known options: ${[...known].join(', ')}`)
    }
  }

  const path = given.path ?? DEFAULT_OPTIONS.path
  if (!isUrlPath(path)) {
    throw new MlesOptionError('path', `must be a URL path starting with "/" without query, fragment or spaces (got ${describe(path)})`)
  }

  let key: string | undefined
  if (given.key !== undefined) {
    if (typeof given.key !== 'string' || given.key.length === 0) {
      throw new MlesOptionError('key', `must be a non-empty string (got ${describe(given.key)})`)
    }
    key = given.key
  } else if (env.MLES_KEY !== undefined && env.MLES_KEY !== '') {
    key = env.MLES_KEY
  }

  const resolved: ResolvedOptions = {
    path,
    key,
    historyLimit: integerOption('historyLimit', given.historyLimit),
    historyMaxBytes: integerOption('historyMaxBytes', given.historyMaxBytes),
    historyTotalBytes: integerOption('historyTotalBytes', given.historyTotalBytes),
    channelIdleMs: integerOption('channelIdleMs', given.channelIdleMs),
    maxMessageBytes: integerOption('maxMessageBytes', given.maxMessageBytes),
    maxFrameBytes: integerOption('maxFrameBytes', given.maxFrameBytes),
    messagesPerSecond: integerOption('messagesPerSecond', given.messagesPerSecond),
    pingIntervalMs: integerOption('pingIntervalMs', given.pingIntervalMs),
    maxMissedPongs: integerOption('maxMissedPongs', given.maxMissedPongs),
    joinTimeoutMs: integerOption('joinTimeoutMs', given.joinTimeoutMs),
    perIpLimit: integerOption('perIpLimit', given.perIpLimit),
    perIpWindowMs: integerOption('perIpWindowMs', given.perIpWindowMs),
    perIpChannelLimit: integerOption('perIpChannelLimit', given.perIpChannelLimit),
    ipv6PrefixLength: integerOption('ipv6PrefixLength', given.ipv6PrefixLength),
    maxConnections: integerOption('maxConnections', given.maxConnections),
    maxChannels: integerOption('maxChannels', given.maxChannels),
    maxBufferedBytes: integerOption('maxBufferedBytes', given.maxBufferedBytes),
    redis: redisOption(given.redis),
    v1: v1Option(given.v1, env),
    historyDir: historyDirOption(given.historyDir),
    historyFlushMs: integerOption('historyFlushMs', given.historyFlushMs),
    authorize: undefined,
    authorizeTimeoutMs: integerOption('authorizeTimeoutMs', given.authorizeTimeoutMs),
    allowedOrigins: null,
    requireOrigin: DEFAULT_OPTIONS.requireOrigin,
    api: apiOption(given.api)
  }
  if (given.authorize !== undefined) {
    if (typeof given.authorize !== 'function') throw new MlesOptionError('authorize', `must be a function (request, { uid, channel }) returning a boolean, { uid?, publish? } or a promise of one (got ${describe(given.authorize)})`)
    resolved.authorize = given.authorize as MlesAuthorize
  }
  resolved.allowedOrigins = allowedOriginsOption(given.allowedOrigins)
  if (given.requireOrigin !== undefined) {
    if (typeof given.requireOrigin !== 'boolean') throw new MlesOptionError('requireOrigin', `must be true or false (got ${describe(given.requireOrigin)})`)
    resolved.requireOrigin = given.requireOrigin
  }

  if (resolved.v1?.webSocketPath === path) {
    throw new MlesOptionError('v1.webSocketPath', `must differ from path (${JSON.stringify(path)}): both are WebSocket endpoints with the subprotocol mles-websocket`)
  }
  if (resolved.v1?.peer !== undefined && resolved.redis !== undefined) {
    throw new MlesOptionError('v1.peer', 'cannot be combined with redis: peer links serve one node')
  }
  if (resolved.historyDir !== undefined && resolved.redis !== undefined) {
    throw new MlesOptionError('historyDir', 'cannot be combined with redis: in a cluster the history lives in Redis')
  }

  // Defaults of the byte bounds follow a larger maxMessageBytes instead of failing.
  if (given.maxFrameBytes === undefined) resolved.maxFrameBytes = Math.max(resolved.maxFrameBytes, resolved.maxMessageBytes)
  if (given.maxBufferedBytes === undefined) resolved.maxBufferedBytes = Math.max(resolved.maxBufferedBytes, resolved.maxMessageBytes)
  // One channel may always fill its own bound.
  if (given.historyTotalBytes === undefined) resolved.historyTotalBytes = Math.max(resolved.historyTotalBytes, resolved.historyMaxBytes)
  if (resolved.maxFrameBytes < resolved.maxMessageBytes) {
    throw new MlesOptionError('maxFrameBytes', `must be at least maxMessageBytes (${resolved.maxMessageBytes}) and at most ${INTEGER_RANGES.maxFrameBytes[1]} (got ${resolved.maxFrameBytes})`)
  }
  if (resolved.maxBufferedBytes < resolved.maxMessageBytes) {
    throw new MlesOptionError('maxBufferedBytes', `must be at least maxMessageBytes (${resolved.maxMessageBytes}) (got ${resolved.maxBufferedBytes})`)
  }
  return resolved
}
