import { existsSync } from 'node:fs'
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer, ServerOptions as HttpsOptions } from 'node:https'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import fastifyCompress from '@fastify/compress'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import mles, { type MlesMetricsSnapshot } from '../src/index.js'
import { requirePackage } from '../src/optional.js'
import type { AcmeCertificates } from './acme.js'
import { DebugAccessLog } from './access-log.js'
import { FileCertificates, type CertificateSource, type CertificateStatus } from './certificates.js'
import type { PrimaryCertificates } from './primary-certificates.js'
import { DEFAULT_ACME_TUNING, LETS_ENCRYPT_PRODUCTION, type AcmeTuning, type ServerConfig } from './config.js'
import { metricsLine } from './metrics.js'
import { standaloneOrigins } from './origins.js'
import { describeListenError, listen } from './listen.js'
import { startPlainHttp } from './plain-http.js'
import { closeSpareConnectionsOnClose } from './spare-connections.js'
import { ENCODINGS, registerWebRoot, type WebRootStats } from './webroot.js'

export type { ServerConfig, AcmeTuning, TlsMode } from './config.js'
export type { CertificateStatus } from './certificates.js'

/** What `startServer` needs; everything but `domains` and `wwwroot` has the CLI's default, each ACME setting too. */
export type ServerConfigInput = Partial<Omit<ServerConfig, 'acme'>> & Pick<ServerConfig, 'domains' | 'wwwroot'> & { acme?: Partial<AcmeTuning> }

/** The Mles metrics plus the static file cache's counters. */
export type ServerMetrics = MlesMetricsSnapshot & { static_compressions: number, static_cache_hits: number, static_peak_open_files: number }

/** A running server, as `run_with_shutdown` gives in the reference. */
export interface ServerHandle {
  /** The Fastify app serving HTTPS (or HTTP with `tls: 'none'`) and the Mles endpoint. */
  app: FastifyInstance
  /** Where the main listener is bound. */
  address: AddressInfo
  /** Where the plain HTTP listener (ACME http-01, redirect) is bound, if any. */
  httpAddress?: AddressInfo
  /** Where the Prometheus listener is bound, if any. */
  metricsAddress?: AddressInfo
  /** Where the v1 TCP listener (`v1Port`) is bound, if any. */
  v1Address?: AddressInfo
  /** The URL to open: scheme, first domain and port. */
  url: string
  metrics: () => ServerMetrics
  /** Logs a metrics snapshot (what SIGUSR1 does). */
  logMetrics: () => void
  /** Re-reads `tlsCert`/`tlsKey` (what SIGHUP does); a no-op without them. */
  reloadCertificates: () => Promise<void>
  /** ACME certificate state per domain (empty without ACME). */
  certificates: () => CertificateStatus[]
  /** Stops accepting, closes members with 1001, finishes in-flight responses within `shutdownTimeoutMs`. */
  shutdown: () => Promise<void>
  /** Settles once the server has shut down. */
  closed: Promise<void>
}

/** How `startServer` runs, apart from the configuration. */
export interface StartOptions {
  /** A logger to use instead of one made from `logLevel`. */
  logger?: FastifyBaseLogger
  /**
   * Under `mles --workers N` with ACME: the certificates the primary orders
   * and hands over (it also answers http-01 and redirects on `httpPort`).
   */
  certificates?: PrimaryCertificates
  /**
   * This server is worker `worker` of `mles --workers N`: with `metricsListen`,
   * its metrics go to the primary, which serves them summed over the workers,
   * instead of a listener of its own.
   */
  metricsToPrimary?: { worker: string }
}

/** Fills in the CLI's defaults. */
export function completeConfig (input: ServerConfigInput): ServerConfig {
  return {
    historyLimit: 200,
    historyFlushMs: 1000,
    fileLimit: 256,
    host: '::',
    port: 443,
    httpPort: 80,
    redirect: false,
    compressionCacheMb: 10,
    perIpLimit: 60,
    messagesPerSecond: 100,
    perIpWindowSec: 60,
    perIpChannelLimit: 30,
    ipv6PrefixLength: 64,
    maxConnections: 65_536,
    maxChannels: 100_000,
    historyTotalMb: 256,
    accessLog: false,
    tls: input.tlsCert !== undefined ? 'files' : 'acme',
    acmeDirectory: LETS_ENCRYPT_PRODUCTION,
    metricsLogIntervalSec: 300,
    logLevel: 'info',
    shutdownTimeoutMs: 10_000,
    workers: 1,
    ...input,
    domains: input.domains.map((domain) => domain.toLowerCase()),
    acme: { ...DEFAULT_ACME_TUNING, ...input.acme }
  }
}

/** Where pages load the browser client from, on every configured domain. */
export const CLIENT_BUNDLE_PATH = '/_mles/client.js'

/** The browser bundle built by `npm run build` (dist/browser), found from source and from dist alike. */
function clientBundleFile (): string | undefined {
  return ['../browser/mles-client.js', '../dist/browser/mles-client.js']
    .map((relative) => fileURLToPath(new URL(relative, import.meta.url)))
    .find((candidate) => existsSync(candidate))
}

function serveClientBundle (app: FastifyInstance): void {
  const file = clientBundleFile()
  if (file === undefined) {
    app.log.warn('mles: the browser client bundle is missing (run npm run build); /_mles/client.js answers 404')
    return
  }
  const directory = fileURLToPath(new URL('.', `file://${file}`))
  for (const name of ['client.js', 'client.js.map']) {
    app.get(`/_mles/${name}`, async (_request, reply) => {
      return await reply.header('cache-control', 'public, max-age=3600').sendFile(name === 'client.js' ? 'mles-client.js' : 'mles-client.js.map', directory)
    })
  }
}

/**
 * Starts the standalone Mles server: the Mles endpoint at `/`, `wwwroot/<domain>/`
 * for each configured Host, TLS from ACME or files, the plain HTTP listener for
 * ACME and redirects, metrics. Resolves once listening.
 */
export async function startServer (input: ServerConfigInput, options: StartOptions = {}): Promise<ServerHandle> {
  const config = completeConfig(input)
  // Optional parts load before anything listens, so a missing package fails the start cleanly.
  const acme = config.tls === 'acme' && options.certificates === undefined ? await import('./acme.js') : null
  let prometheus: typeof import('./prometheus.js') | null = null
  if (config.metricsListen !== undefined) {
    await requirePackage('prom-client', 'metricsListen (--metrics-listen)')
    prometheus = await import('./prometheus.js')
  }
  const loggerOption = options.logger === undefined ? { logger: { level: config.logLevel } } : { loggerInstance: options.logger }

  let certificates: CertificateSource | undefined
  let files: FileCertificates | undefined
  let acmeCertificates: AcmeCertificates | undefined
  if (config.tls === 'files') {
    if (config.tlsCert === undefined || config.tlsKey === undefined) throw new Error('tls "files" needs tlsCert and tlsKey')
    files = new FileCertificates(config.tlsCert, config.tlsKey)
    await files.load()
    certificates = files
  }

  if (options.certificates !== undefined) certificates = options.certificates

  let https: HttpsOptions | undefined
  if (config.tls !== 'none') {
    https = {
      SNICallback: (servername, callback) => { callback(null, certificates?.contextFor(servername)) },
      ...(certificates?.defaultCertificate() ?? {})
    }
  }
  const app = Fastify({
    ...loggerOption,
    ...(https === undefined ? {} : { https }),
    ...(config.trustProxy === undefined ? {} : { trustProxy: config.trustProxy }),
    ...(config.accessLog ? {} : { logController: new DebugAccessLog() }),
    return503OnClosing: true
  }) as unknown as FastifyInstance
  if (acme !== null) {
    const { AcmeCertificates, configureAcmeTransport } = acme
    await configureAcmeTransport(config.acmeCaFile, config.acme.requestRetries)
    acmeCertificates = new AcmeCertificates({
      domains: config.domains,
      directoryUrl: config.acmeDirectory,
      email: config.email,
      cacheDir: config.cache,
      caFile: config.acmeCaFile,
      tuning: config.acme
    }, app.log)
    certificates = acmeCertificates
  }
  const setDefaultCertificate = (): void => {
    const pem = certificates?.defaultCertificate()
    if (pem !== undefined) (app.server as unknown as HttpsServer).setSecureContext(pem)
  }
  if (options.certificates !== undefined) options.certificates.onInstalled = setDefaultCertificate

  // @fastify/compress attaches to routes added after it; the web root's cache hook is app-wide, so it runs first.
  await app.register(fastifyCompress, { encodings: ENCODINGS as Array<'br' | 'gzip'> })
  const webRootStats: WebRootStats = await registerWebRoot(app, {
    wwwroot: config.wwwroot,
    domains: config.domains,
    fileLimit: config.fileLimit,
    compressionCacheBytes: config.compressionCacheMb * 1024 * 1024
  })
  serveClientBundle(app)
  await app.register(mles, {
    historyLimit: config.historyLimit,
    perIpLimit: config.perIpLimit,
    messagesPerSecond: config.messagesPerSecond,
    perIpWindowMs: config.perIpWindowSec * 1000,
    perIpChannelLimit: config.perIpChannelLimit,
    ipv6PrefixLength: config.ipv6PrefixLength,
    maxConnections: config.maxConnections,
    maxChannels: config.maxChannels,
    historyTotalBytes: config.historyTotalMb * 1024 * 1024,
    allowedOrigins: standaloneOrigins(config, () => (app.server.address() as AddressInfo | null)?.port ?? config.port),
    ...(config.key === undefined ? {} : { key: config.key }),
    ...(config.apiKey === undefined ? {} : { api: { key: config.apiKey } }),
    ...(config.redis === undefined ? {} : { redis: config.redis }),
    ...(config.v1Port === undefined ? {} : { v1: { port: config.v1Port, host: config.host, ...(config.v1Peer === undefined ? {} : { peer: config.v1Peer }), ...(config.v1WebSocketPath === undefined ? {} : { webSocketPath: config.v1WebSocketPath }) } }),
    ...(config.historyDir === undefined ? {} : { historyDir: config.historyDir, historyFlushMs: config.historyFlushMs })
  })
  closeSpareConnectionsOnClose(app)

  let address: AddressInfo
  try {
    address = await listen(app, config.host, config.port)
  } catch (error) {
    await app.close()
    throw describeListenError(error, config.tls === 'none' ? 'HTTP' : 'HTTPS', config.host, config.port)
  }

  // The plain HTTP listener: ACME http-01 challenges and, with `redirect`, 301 to https (under `mles --workers`, the primary's).
  let httpApp: FastifyInstance | undefined
  let httpAddress: AddressInfo | undefined
  if ((config.tls === 'acme' || config.redirect) && options.certificates === undefined) {
    try {
      ({ app: httpApp, address: httpAddress } = await startPlainHttp(config, { loggerInstance: app.log }, (token) => acmeCertificates?.challengeResponse(token), () => address.port))
    } catch (error) {
      await app.close()
      throw error
    }
  }

  if (acmeCertificates !== undefined) {
    acmeCertificates.onInstalled = setDefaultCertificate
    await acmeCertificates.start()
    setDefaultCertificate()
  }

  const metrics = (): ServerMetrics => ({ ...app.mles.metrics(), static_compressions: webRootStats.compressions, static_cache_hits: webRootStats.cacheHits, static_peak_open_files: webRootStats.peakOpenFiles })
  const logMetrics = (): void => {
    const snapshot = metrics()
    app.log.info({ metrics: snapshot }, metricsLine(snapshot))
  }
  const metricsTimer = config.metricsLogIntervalSec > 0 ? setInterval(logMetrics, config.metricsLogIntervalSec * 1000) : undefined
  metricsTimer?.unref()

  let metricsServer: HttpServer | undefined
  let metricsAddress: AddressInfo | undefined
  if (config.metricsListen !== undefined && prometheus !== null && options.metricsToPrimary !== undefined) {
    const registry = prometheus.metricsRegistry(metrics as () => ServerMetrics & Record<string, number>)
    prometheus.shareWithPrimary(registry, options.metricsToPrimary.worker, () => app.mles.metrics().active_connections)
  } else if (config.metricsListen !== undefined && prometheus !== null) {
    const { metricsRegistry, startMetricsListener } = prometheus
    const registry = metricsRegistry(metrics as () => ServerMetrics & Record<string, number>)
    try {
      const started = await startMetricsListener(registry, config.metricsListen.host, config.metricsListen.port)
      metricsServer = started.server
      metricsAddress = started.address
    } catch (error) {
      await Promise.all([app.close(), httpApp?.close()])
      throw describeListenError(error, 'metrics', config.metricsListen.host, config.metricsListen.port)
    }
  }

  let resolveClosed: () => void = () => {}
  const closed = new Promise<void>((resolve) => { resolveClosed = resolve })
  let shuttingDown: Promise<void> | null = null
  const shutdown = async (): Promise<void> => {
    if (shuttingDown !== null) return await shuttingDown
    shuttingDown = (async () => {
      app.log.info('mles: shutting down')
      // Stop accepting before closing members: under --workers this takes the worker out of the
      // primary's rotation at once, so new connections go to the others instead of getting 503.
      app.server.close()
      if (metricsTimer !== undefined) clearInterval(metricsTimer)
      acmeCertificates?.stop()
      const force = setTimeout(() => {
        app.log.warn('mles: shutdown timeout; closing remaining connections')
        app.server.closeAllConnections()
        httpApp?.server.closeAllConnections()
        metricsServer?.closeAllConnections()
      }, config.shutdownTimeoutMs)
      force.unref()
      await Promise.all([
        app.close(),
        httpApp?.close(),
        metricsServer === undefined ? undefined : new Promise((resolve) => { metricsServer?.close(resolve) })
      ])
      clearTimeout(force)
      resolveClosed()
    })()
    return await shuttingDown
  }

  const scheme = config.tls === 'none' ? 'http' : 'https'
  const defaultPort = config.tls === 'none' ? 80 : 443
  return {
    app,
    address,
    httpAddress,
    metricsAddress,
    v1Address: app.mles.v1Address() ?? undefined,
    url: `${scheme}://${config.domains[0]}${address.port === defaultPort ? '' : `:${address.port}`}/`,
    metrics,
    logMetrics,
    reloadCertificates: async () => {
      if (files === undefined) return
      await files.load()
      setDefaultCertificate()
      app.log.info('mles: certificate reloaded')
    },
    certificates: () => acmeCertificates?.status() ?? [],
    shutdown,
    closed
  }
}
