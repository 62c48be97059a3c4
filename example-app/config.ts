import { statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import ipaddr from 'ipaddr.js'
import { normalizeOrigin, parsePeerAddress } from '../src/options.js'

/** Let's Encrypt's directories: production (default) and staging (`--staging`). */
export const LETS_ENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory'
export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory'

/** How the main listener gets its certificate. */
export type TlsMode = 'acme' | 'files' | 'none'

/** The standalone server's configuration: the reference's flags (SPEC §8) and ours. */
export interface ServerConfig {
  /** Domains to serve (and to get certificates for); lower case. */
  domains: string[]
  /** Web root: `wwwroot/<domain>/` is served for that Host. Absolute. */
  wwwroot: string
  /** ACME account contact. */
  email?: string
  /** Directory for the ACME account key and certificates; without it they live in memory only. */
  cache?: string
  /** History limit per channel (messages). */
  historyLimit: number
  /** Directory keeping the channel history on disk (LMDB); without it history lives in memory only. Absolute. */
  historyDir?: string
  /** With `historyDir`: milliseconds between writes to disk, about what a crash may lose. */
  historyFlushMs: number
  /** At most this many static files open at once. */
  fileLimit: number
  /** Address to listen on; `::` is every address, IPv6 and IPv4. */
  host: string
  /** TLS port for HTTPS and WebSocket (plain HTTP with `tls: 'none'`). */
  port: number
  /** Plain HTTP port for ACME http-01 challenges and `redirect`. */
  httpPort: number
  /** Also answer on `httpPort` with 301 to https. */
  redirect: boolean
  /** Megabytes of compressed static files kept in memory; 0 = off. */
  compressionCacheMb: number
  /** Upgrades per source IP per window; 0 = off. */
  perIpLimit: number
  /** Channels one source address may create per window; 0 = off. */
  perIpChannelLimit: number
  /** Bits of an IPv6 address the per-IP limits key on (64: a whole /64 counts as one address). */
  ipv6PrefixLength: number
  /** Connections held at once; more are refused with 503. 0 = off. */
  maxConnections: number
  /** Channels held at once. 0 = off. */
  maxChannels: number
  /** Megabytes of history kept over all channels together; 0 = no bound. */
  historyTotalMb: number
  /** Proxies whose `X-Forwarded-For` names the client (addresses, CIDRs, or proxy-addr's `loopback`, `linklocal`, `uniquelocal`); none by default. */
  trustProxy?: string[]
  /** Log every HTTP request and upgrade at `info` (Fastify's request log); without it they are logged at `debug`. */
  accessLog: boolean
  /** Frames a connection may publish per second; 0 = off. */
  messagesPerSecond: number
  /** That window, in seconds. */
  perIpWindowSec: number
  tls: TlsMode
  /** Own certificate chain and key (PEM files), reloaded on SIGHUP. */
  tlsCert?: string
  tlsKey?: string
  /** ACME directory URL. */
  acmeDirectory: string
  /** Extra CA (PEM) to trust for the ACME directory — a private CA or a test one such as Pebble. */
  acmeCaFile?: string
  /** Listener for the Prometheus endpoint (`/metrics`), e.g. 127.0.0.1:9464. */
  metricsListen?: { host: string, port: number }
  /** Seconds between metrics log lines; 0 = off. */
  metricsLogIntervalSec: number
  /** Shared authentication key (env MLES_KEY). */
  key?: string
  /** Bearer key of the HTTP API for backends (`--api-key`, env MLES_API_KEY); without one the API is off. */
  apiKey?: string
  /** Log level (env MLES_LOG_LEVEL). */
  logLevel: string
  /** Longest a graceful shutdown may take before connections are cut. */
  shutdownTimeoutMs: number
  /** Redis URL, the masters of a Redis Cluster, or Sentinels and the master they watch: this server is one node of a cluster sharing channels through it. */
  redis?: string | { cluster: string[] } | { sentinels: string[], masterName: string }
  /** Port for clients of the legacy v1 TCP protocol (IANA: 8077), on `host`; off when undefined. */
  v1Port?: number
  /** A v1 server (`HOST[:PORT]`) each channel with local members is linked to; needs `v1Port`. */
  v1Peer?: string
  /** Path where v1 clients also connect over WebSocket (CBOR `Msg`s, as through the reference's proxy); needs `v1Port`. */
  v1WebSocketPath?: string
  /** Worker processes sharing the port (more than 1 needs `redis`). */
  workers: number
  /** Browser origins allowed besides the server's own pages (`--allowed-origin`); `'*'` allows any. */
  allowedOrigins?: string[]
  /** ACME tuning, for tests and private CAs (no flags). */
  acme: AcmeTuning
}

export interface AcmeTuning {
  /** Renew when fewer than this many days remain. Default 30. */
  renewBeforeDays: number
  /** How often to check whether a certificate needs renewing. Default 12 h. */
  checkIntervalMs: number
  /** Polling of the CA while an order is processed (acme-client's backoff). */
  pollMinMs: number
  pollMaxMs: number
  /** First and longest wait before retrying a failed issuance. */
  retryMinMs: number
  retryMaxMs: number
  /** How often acme-client retries one failed request to the CA (its own default is 5, with waits of 5 s and more). */
  requestRetries: number
}

export const DEFAULT_ACME_TUNING: AcmeTuning = {
  renewBeforeDays: 30,
  checkIntervalMs: 12 * 60 * 60 * 1000,
  pollMinMs: 2000,
  pollMaxMs: 30_000,
  retryMinMs: 5000,
  retryMaxMs: 60 * 60 * 1000,
  requestRetries: 5
}

/** A bad command line or configuration; the CLI prints it on one line and exits 2. */
export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

function integer (min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`)
    const number = Number(value)
    if (number < min || number > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`)
    return number
  }
}

function domain (value: string, previous: string[] = []): string[] {
  const name = value.trim().toLowerCase().replace(/\.$/, '')
  const ipv4 = IPV4.exec(name)
  if (!(HOSTNAME.test(name) || (ipv4 !== null && ipv4.slice(1).every((part) => Number(part) <= 255)))) {
    throw new InvalidArgumentError(`"${value}" is not a domain name`)
  }
  return previous.includes(name) ? previous : [...previous, name]
}

function listenAddress (value: string): { host: string, port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d+)$/.exec(value)
  if (match === null) throw new InvalidArgumentError('must be HOST:PORT, e.g. 127.0.0.1:9464')
  const port = Number(match[3])
  if (port > 65535) throw new InvalidArgumentError('port must be from 0 to 65535')
  return { host: match[1] ?? match[2], port }
}

function urlPath (value: string): string {
  if (!value.startsWith('/') || /[\s?#]/.test(value)) throw new InvalidArgumentError('must be a URL path starting with / (no query, fragment or spaces)')
  return value
}

function peerAddress (value: string): string {
  if (parsePeerAddress(value) === null) throw new InvalidArgumentError('must be HOST or HOST:PORT (an IPv6 address in brackets)')
  return value
}

function redisUrl (value: string): string {
  let scheme = ''
  try {
    scheme = new URL(value).protocol
  } catch {}
  if (scheme !== 'redis:' && scheme !== 'rediss:') throw new InvalidArgumentError('must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379')
  return value
}

/** `--redis-cluster URL[,URL…]`: masters of one Redis Cluster, all redis:// or all rediss://. */
function redisClusterUrls (value: string): string[] {
  return redisUrls(value, 'cluster masters')
}

/** `--redis-sentinel URL[,URL…]`: Sentinels, all redis:// or all rediss://. */
function redisSentinelUrls (value: string): string[] {
  return redisUrls(value, 'Sentinels')
}

function redisUrls (value: string, what: string): string[] {
  const urls = value.split(',').map((part) => part.trim()).filter((part) => part !== '')
  if (urls.length === 0) throw new InvalidArgumentError(`must list redis:// or rediss:// URLs of ${what}, comma-separated`)
  for (const each of urls) {
    try {
      redisUrl(each)
    } catch {
      throw new InvalidArgumentError(`must list redis:// or rediss:// URLs, comma-separated (got "${each}")`)
    }
  }
  if (new Set(urls.map((each) => new URL(each).protocol)).size > 1) throw new InvalidArgumentError(`mixes redis:// and rediss://: the ${what} are reached the same way`)
  return urls
}

function url (value: string): string {
  try {
    const parsed = new URL(value)
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error('scheme')
  } catch {
    throw new InvalidArgumentError('must be an http(s) URL')
  }
  return value
}

/** `path` made absolute; a ConfigError naming `flag` if it exists and is not a directory (a missing one is created later). */
function directoryToBe (flag: string, path: string): string {
  const absolute = resolve(path)
  let other = false
  try {
    other = !statSync(absolute).isDirectory()
  } catch {}
  if (other) throw new ConfigError(`${flag}: ${path} is not a directory`)
  return absolute
}

/** `path` made absolute, if it names an existing directory or file; otherwise a ConfigError naming `flag`. */
function existing (kind: 'directory' | 'file', flag: string, path: string): string {
  const absolute = resolve(path)
  let found = false
  try {
    const info = statSync(absolute)
    found = kind === 'directory' ? info.isDirectory() : info.isFile()
  } catch {}
  if (!found) throw new ConfigError(`${flag}: ${path} is not ${kind === 'directory' ? 'a directory' : 'a readable file'}`)
  return absolute
}

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal']

/** `--trust-proxy`: an address, a CIDR or a proxy-addr name, repeatable. */
function trustedProxy (value: string, previous: string[] | undefined): string[] {
  const valid = PROXY_NAMES.includes(value) || ipaddr.isValid(value) || (() => {
    try {
      ipaddr.parseCIDR(value)
      return true
    } catch {
      return false
    }
  })()
  if (!valid) throw new InvalidArgumentError(`must be an address (10.0.0.1), a CIDR (10.0.0.0/8) or one of ${PROXY_NAMES.join(', ')}`)
  return [...(previous ?? []), value]
}

/** `--workers N` or `auto`: one worker per core the process may use (`os.availableParallelism()`). */
function workerCount (value: string): number {
  if (value === 'auto') return Math.min(256, availableParallelism())
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 256) throw new InvalidArgumentError('must be an integer from 1 to 256, or auto (one per core)')
  return Number(value)
}

function allowedOrigin (value: string, previous: string[] | undefined): string[] {
  if (value !== '*' && normalizeOrigin(value) === null) throw new InvalidArgumentError('must be an origin such as https://example.com or http://localhost:8080, or \'*\'')
  return [...(previous ?? []), value]
}

export function buildCommand (version: string): Command {
  return new Command('mles')
    .description('Mles v2 publish/subscribe server: WebSocket channels, a web root per domain, automatic TLS')
    .version(version, '-V, --version')
    .helpOption('-h, --help')
    .addOption(new Option('-d, --domains <domain...>', 'domain(s) to serve and to get certificates for (repeatable)').argParser(domain))
    .option('-e, --email <email>', 'contact for the ACME account')
    .option('-c, --cache <dir>', 'directory for the ACME account key and certificates')
    .addOption(new Option('-l, --limit <messages>', 'history limit per channel').argParser(integer(0, 1_000_000)).default(200))
    .option('--history-dir <dir>', 'keep channel history on disk in DIR (LMDB, created if missing): restarts lose none of it')
    .addOption(new Option('--history-flush <ms>', 'with --history-dir: milliseconds between writes to disk; a crash may lose about this much').argParser(integer(1, 2_147_483_647)).default(1000))
    .addOption(new Option('-f, --filelimit <files>', 'most static files open at once').argParser(integer(1, 1_000_000)).default(256))
    .option('-w, --wwwroot <dir>', 'web root: DIR/<domain>/ is served for that Host')
    .option('-s, --staging', 'use the Let\'s Encrypt staging directory', false)
    .addOption(new Option('-p, --port <port>', 'TLS port for HTTPS and WebSocket').argParser(integer(0, 65535)).default(443))
    .option('-r, --redirect', 'also listen on --http-port and redirect to https', false)
    .addOption(new Option('-C, --compression-cache <MB>', 'MB of compressed static files kept in memory; 0 = off').argParser(integer(0, 1_000_000)).default(10))
    .addOption(new Option('--messages-per-second <frames>', 'frames a connection may publish per second, the excess dropped; 0 = off').argParser(integer(0, 1_000_000_000)).default(100))
    .addOption(new Option('--per-ip-limit <connections>', 'connections allowed per source IP per window; 0 = off').argParser(integer(0, 1_000_000_000)).default(60))
    .addOption(new Option('--per-ip-window <seconds>', 'that window in seconds').argParser(integer(1, 2_000_000)).default(60))
    .addOption(new Option('--per-ip-channel-limit <channels>', 'channels one source IP may create per window, joins past it closed with 1013; 0 = off').argParser(integer(0, 1_000_000_000)).default(30))
    .addOption(new Option('--ipv6-prefix <bits>', 'the per-IP limits count an IPv6 address by its network of this many bits (64: a /64 is one address; 128: each address)').argParser(integer(1, 128)).default(64))
    .addOption(new Option('--max-connections <count>', 'connections held at once, more refused with 503 and Retry-After; 0 = off').argParser(integer(0, 1_000_000_000)).default(65_536))
    .addOption(new Option('--max-channels <count>', 'channels held at once: past it the least recently active one without members is forgotten, or the join closed with 1013; 0 = off').argParser(integer(0, 1_000_000_000)).default(100_000))
    .addOption(new Option('--history-total <MB>', 'MB of history kept over all channels together, the least recently active evicted first; 0 = no bound').argParser(integer(0, 1_000_000_000)).default(256))
    .addOption(new Option('--trust-proxy <proxy...>', 'take the client address from X-Forwarded-For when the peer is this proxy: an address, a CIDR, or loopback/linklocal/uniquelocal (repeatable)').argParser(trustedProxy))
    .option('--access-log', 'log every HTTP request and upgrade at info (default: at debug, so a join storm is not a logging storm)', false)
    .option('--host <address>', 'address to listen on (default: every address, IPv6 and IPv4)', '::')
    .addOption(new Option('--http-port <port>', 'plain HTTP port for ACME http-01 and --redirect').argParser(integer(0, 65535)).default(80))
    .option('--no-tls', 'plain HTTP and WebSocket (development, or behind a TLS-terminating proxy)')
    .option('--tls-cert <file>', 'own certificate chain (PEM) instead of ACME; reloaded on SIGHUP')
    .option('--tls-key <file>', 'private key (PEM) for --tls-cert')
    .addOption(new Option('--acme-directory <url>', 'ACME directory URL (default: Let\'s Encrypt)').argParser(url))
    .option('--acme-ca-file <file>', 'extra CA (PEM) to trust for the ACME directory')
    .addOption(new Option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics').argParser(listenAddress))
    .addOption(new Option('--metrics-interval <seconds>', 'seconds between metrics log lines; 0 = off').argParser(integer(0, 86_400)).default(300))
    .addOption(new Option('--v1-port <port>', 'also serve the legacy Mles v1 TCP protocol on this port (IANA: 8077), in the same channels').argParser(integer(0, 65535)))
    .addOption(new Option('--v1-peer <host[:port]>', 'with --v1-port: link every channel with members here to this v1 server (port 8077 by default)').argParser(peerAddress))
    .addOption(new Option('--v1-ws-path <path>', 'with --v1-port: also take v1 clients over WebSocket at this path (CBOR messages, as through the reference\'s proxy)').argParser(urlPath))
    .addOption(new Option('--redis <url>', 'join a cluster through Redis (redis:// or rediss:// URL): channels, history and uids span every node').argParser(redisUrl))
    .addOption(new Option('--redis-cluster <urls>', 'as --redis, through a Redis Cluster: comma-separated URLs of some of its masters').argParser(redisClusterUrls))
    .addOption(new Option('--redis-sentinel <urls>', 'as --redis, through Redis Sentinel: comma-separated URLs of some Sentinels (port 26379 by default); with --redis-master').argParser(redisSentinelUrls))
    .option('--redis-master <name>', 'with --redis-sentinel: the name the Sentinels monitor the master under')
    .addOption(new Option('--allowed-origin <origin...>', 'also let pages of ORIGIN (https://host[:port]) connect, besides the --domains themselves; \'*\' lets any page connect (repeatable)').argParser(allowedOrigin))
    .option('--api-key <key>', 'turn on the HTTP API for backends at /_mles/api, with this bearer key (16 characters or more; better given as MLES_API_KEY)')
    .addOption(new Option('--workers <count>', 'worker processes sharing the port, joined through --redis; auto: one per core; SIGUSR2 replaces them with no downtime').argParser(workerCount).default(1))
    .addHelpText('after', '\nEnvironment:\n  MLES_KEY         shared key for SipHash authentication (and v1 shared-key mode)\n  MLES_ADDR_KEY    v1 address mode: extra string hashed after the client address\n  MLES_LOG_LEVEL   log level: fatal, error, warn, info (default), debug, trace\n  MLES_API_KEY     bearer key of the HTTP API (as --api-key, which wins)\n  MLES_ACME_TUNING ACME timings as JSON (tests, private CAs), e.g. {"renewBeforeDays":60}\n\nSignals: SIGUSR1 logs a metrics snapshot (with --workers, of them all), SIGHUP reloads --tls-cert/--tls-key, SIGTERM/SIGINT shut down gracefully, SIGUSR2 (with --workers) replaces the workers: N new ones, then the old ones go.')
}

interface ParsedFlags {
  domains?: string[]
  email?: string
  cache?: string
  limit: number
  historyDir?: string
  historyFlush: number
  filelimit: number
  wwwroot?: string
  staging: boolean
  port: number
  redirect: boolean
  compressionCache: number
  perIpLimit: number
  messagesPerSecond: number
  perIpWindow: number
  perIpChannelLimit: number
  ipv6Prefix: number
  maxConnections: number
  maxChannels: number
  historyTotal: number
  trustProxy?: string[]
  accessLog: boolean
  host: string
  httpPort: number
  tls: boolean
  tlsCert?: string
  tlsKey?: string
  acmeDirectory?: string
  acmeCaFile?: string
  metricsListen?: { host: string, port: number }
  metricsInterval: number
  redis?: string
  redisCluster?: string[]
  redisSentinel?: string[]
  redisMaster?: string
  v1Port?: number
  v1Peer?: string
  v1WsPath?: string
  workers: number
  allowedOrigin?: string[]
  apiKey?: string
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** The HTTP API's key from `--api-key` or MLES_API_KEY, checked as the plugin's option `api.key` is. */
function apiKey (flag: string | undefined, env: Record<string, string | undefined>): string | undefined {
  const fromEnv = env.MLES_API_KEY !== undefined && env.MLES_API_KEY !== '' ? env.MLES_API_KEY : undefined
  const key = flag ?? fromEnv
  if (key !== undefined && (key.length < 16 || /\s/.test(key))) {
    throw new ConfigError(`${flag === undefined ? 'MLES_API_KEY' : '--api-key'} must be at least 16 characters without spaces (got ${key.length} characters)`)
  }
  return key
}

/**
 * `MLES_ACME_TUNING`: ACME timings as JSON, for tests and private CAs (say
 * `{"renewBeforeDays": 60}`); every field optional, a positive integer.
 */
function acmeTuning (value: string | undefined): AcmeTuning {
  if (value === undefined || value === '') return { ...DEFAULT_ACME_TUNING }
  let given: unknown
  try {
    given = JSON.parse(value)
  } catch {
    throw new ConfigError('MLES_ACME_TUNING must be a JSON object, e.g. {"renewBeforeDays":60}')
  }
  if (typeof given !== 'object' || given === null || Array.isArray(given)) throw new ConfigError('MLES_ACME_TUNING must be a JSON object, e.g. {"renewBeforeDays":60}')
  const tuning: AcmeTuning = { ...DEFAULT_ACME_TUNING }
  for (const [name, setting] of Object.entries(given)) {
    if (!(name in DEFAULT_ACME_TUNING)) throw new ConfigError(`MLES_ACME_TUNING: ${name} is not a setting; known: ${Object.keys(DEFAULT_ACME_TUNING).join(', ')}`)
    if (typeof setting !== 'number' || !Number.isInteger(setting) || setting < 1 || setting > 2_147_483_647) throw new ConfigError(`MLES_ACME_TUNING: ${name} must be a positive integer`)
    tuning[name as keyof AcmeTuning] = setting
  }
  return tuning
}

/** Turns parsed flags and the environment into a checked configuration. */
export function configFromFlags (flags: ParsedFlags, env: Record<string, string | undefined>): ServerConfig {
  if (flags.domains === undefined || flags.domains.length === 0) throw new ConfigError('--domains is required (e.g. --domains example.com)')
  if (flags.wwwroot === undefined) throw new ConfigError('--wwwroot is required (e.g. --wwwroot /var/www)')
  const wwwroot = existing('directory', '--wwwroot', flags.wwwroot)
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new ConfigError('--tls-cert and --tls-key go together')

  const acmeFlags = ['email', 'cache', 'acmeDirectory', 'acmeCaFile'].filter((name) => flags[name as keyof ParsedFlags] !== undefined)
  if (flags.staging) acmeFlags.push('staging')
  const flagName = (name: string): string => '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
  let tls: TlsMode = 'acme'
  if (!flags.tls) {
    tls = 'none'
    if (flags.tlsCert !== undefined) throw new ConfigError('--no-tls cannot be combined with --tls-cert/--tls-key')
    if (flags.redirect) throw new ConfigError('--redirect needs TLS; it cannot be combined with --no-tls')
    if (acmeFlags.length > 0) throw new ConfigError(`--no-tls cannot be combined with ${flagName(acmeFlags[0])}`)
  } else if (flags.tlsCert !== undefined) {
    tls = 'files'
    if (acmeFlags.length > 0) throw new ConfigError(`--tls-cert/--tls-key cannot be combined with ACME options (${flagName(acmeFlags[0])})`)
  }
  if (flags.staging && flags.acmeDirectory !== undefined) throw new ConfigError('--staging and --acme-directory cannot be combined')

  if (flags.v1Peer !== undefined && flags.v1Port === undefined) throw new ConfigError('--v1-peer needs --v1-port')
  if (flags.v1WsPath !== undefined && flags.v1Port === undefined) throw new ConfigError('--v1-ws-path needs --v1-port')
  if (flags.v1WsPath === '/') throw new ConfigError('--v1-ws-path must differ from / (the Mles WebSocket endpoint)')
  const redisFlags = (['redis', 'redisCluster', 'redisSentinel'] as const).filter((name) => flags[name] !== undefined).map(flagName)
  if (redisFlags.length > 1) throw new ConfigError(`${redisFlags.join(' and ')} cannot be combined: give one Redis, one Redis Cluster or the Sentinels of one`)
  if (flags.redisSentinel !== undefined && (flags.redisMaster === undefined || flags.redisMaster === '')) throw new ConfigError('--redis-sentinel needs --redis-master NAME: the name the Sentinels monitor the master under')
  if (flags.redisMaster !== undefined && flags.redisSentinel === undefined) throw new ConfigError('--redis-master goes with --redis-sentinel')
  const redisFlag = redisFlags[0] ?? '--redis'
  const redis = flags.redisCluster !== undefined
    ? { cluster: flags.redisCluster }
    : flags.redisSentinel !== undefined ? { sentinels: flags.redisSentinel, masterName: flags.redisMaster as string } : flags.redis
  if (flags.v1Peer !== undefined && redis !== undefined) throw new ConfigError(`--v1-peer cannot be combined with ${redisFlag}`)
  if (flags.historyDir !== undefined && redis !== undefined) throw new ConfigError(`--history-dir cannot be combined with ${redisFlag}: in a cluster the history lives in Redis`)
  if (flags.workers > 1) {
    if (redis === undefined) throw new ConfigError(`--workers ${flags.workers} needs --redis URL (or --redis-cluster, --redis-sentinel): the workers share channels, history and uids through Redis`)
  }

  const logLevel = env.MLES_LOG_LEVEL ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`MLES_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`)
  const key = env.MLES_KEY !== undefined && env.MLES_KEY !== '' ? env.MLES_KEY : undefined

  return {
    domains: flags.domains,
    wwwroot,
    email: flags.email,
    cache: flags.cache === undefined ? undefined : resolve(flags.cache),
    historyLimit: flags.limit,
    historyDir: flags.historyDir === undefined ? undefined : directoryToBe('--history-dir', flags.historyDir),
    historyFlushMs: flags.historyFlush,
    fileLimit: flags.filelimit,
    host: flags.host,
    port: flags.port,
    httpPort: flags.httpPort,
    redirect: flags.redirect,
    compressionCacheMb: flags.compressionCache,
    perIpLimit: flags.perIpLimit,
    messagesPerSecond: flags.messagesPerSecond,
    perIpWindowSec: flags.perIpWindow,
    perIpChannelLimit: flags.perIpChannelLimit,
    ipv6PrefixLength: flags.ipv6Prefix,
    maxConnections: flags.maxConnections,
    maxChannels: flags.maxChannels,
    historyTotalMb: flags.historyTotal,
    trustProxy: flags.trustProxy,
    accessLog: flags.accessLog,
    tls,
    tlsCert: flags.tlsCert === undefined ? undefined : existing('file', '--tls-cert', flags.tlsCert),
    tlsKey: flags.tlsKey === undefined ? undefined : existing('file', '--tls-key', flags.tlsKey),
    acmeDirectory: flags.acmeDirectory ?? (flags.staging ? LETS_ENCRYPT_STAGING : LETS_ENCRYPT_PRODUCTION),
    acmeCaFile: flags.acmeCaFile === undefined ? undefined : existing('file', '--acme-ca-file', flags.acmeCaFile),
    metricsListen: flags.metricsListen,
    metricsLogIntervalSec: flags.metricsInterval,
    key,
    apiKey: apiKey(flags.apiKey, env),
    logLevel,
    shutdownTimeoutMs: 10_000,
    redis,
    v1Port: flags.v1Port,
    v1Peer: flags.v1Peer,
    v1WebSocketPath: flags.v1WsPath,
    workers: flags.workers,
    allowedOrigins: flags.allowedOrigin,
    acme: acmeTuning(env.MLES_ACME_TUNING)
  }
}

export type ParseResult =
  | { kind: 'config', config: ServerConfig }
  | { kind: 'exit', code: number, output: string }

/**
 * Parses a command line. Help and version come back as output with exit code 0;
 * any bad flag or value as one line with exit code 2.
 */
export function parseCommandLine (argv: string[], env: Record<string, string | undefined>, version: string): ParseResult {
  let output = ''
  const command = buildCommand(version)
    .exitOverride()
    .configureOutput({ writeOut: (text) => { output += text }, writeErr: (text) => { output += text } })
  try {
    command.parse(argv, { from: 'user' })
    return { kind: 'config', config: configFromFlags(command.opts<ParsedFlags>(), env) }
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return { kind: 'exit', code: 0, output }
      const line = error.message.replace(/^error: /, '').split('\n')[0]
      return { kind: 'exit', code: 2, output: `mles: ${line} (see mles --help)\n` }
    }
    if (error instanceof ConfigError) return { kind: 'exit', code: 2, output: `mles: ${error.message}\n` }
    throw error
  }
}
