#!/usr/bin/env node
// The `mles` command: the reference server's command line (SPEC §8) on fastify-mles.
import cluster from 'node:cluster'
import { MlesMissingPackageError, requirePackage, type OptionalPackage } from '../src/optional.js'
import { parseCommandLine, type ServerConfig } from './config.js'
import { startServer, type ServerHandle } from './server.js'
import { packageVersion } from './version.js'
import { hostname } from 'node:os'
import { metricsLine, sumMetrics } from './metrics.js'
import { isCertificatesMessage, PrimaryCertificates, type CertificatesMessage, type CertificatesRequest } from './primary-certificates.js'
import { WorkerPool, type MetricsRequest, type WorkerMessage } from './workers.js'

const parsed = parseCommandLine(process.argv.slice(2), process.env, packageVersion())
if (parsed.kind === 'exit') {
  ;(parsed.code === 0 ? process.stdout : process.stderr).write(parsed.output)
  process.exit(parsed.code)
}
const { config } = parsed
if (!cluster.isWorker) await checkOptionalPackages(config)

if (config.workers > 1 && cluster.isPrimary) await runPrimary(config)
else await runServer(config)

/** The optional packages the given flags need: a missing one is one line and exit 2, before anything starts. */
async function checkOptionalPackages (config: ServerConfig): Promise<void> {
  const needed: Array<[OptionalPackage, string, boolean]> = [
    ['ioredis', typeof config.redis === 'object' ? '--redis-cluster' : '--redis', config.redis !== undefined],
    ['lmdb', '--history-dir', config.historyDir !== undefined],
    ['prom-client', '--metrics-listen', config.metricsListen !== undefined]
  ]
  for (const [packageName, flag, used] of needed) {
    if (!used) continue
    try {
      await requirePackage(packageName, flag, '')
    } catch (error) {
      process.stderr.write(`mles: ${(error as Error).message}\n`)
      process.exit(error instanceof MlesMissingPackageError ? 2 : 1)
    }
  }
}

/** One server in this process: the whole of `mles`, or one worker of `mles --workers N`. */
async function runServer (config: ServerConfig): Promise<void> {
  const report = (message: WorkerMessage): void => { process.send?.(message) }
  let handle: ServerHandle
  try {
    // A worker's metrics line is the primary's, over all the workers; with ACME its certificates are the primary's too.
    handle = cluster.isWorker
      ? await startServer({ ...config, metricsLogIntervalSec: 0 }, { metricsToPrimary: { worker: String(cluster.worker?.id ?? process.pid) }, ...(config.tls === 'acme' ? { certificates: certificatesFromPrimary(config) } : {}) })
      : await startServer(config)
  } catch (error) {
    process.stderr.write(`mles: ${(error as Error).message}\n`)
    report({ mles: 'failed', error: (error as Error).message })
    process.exit(1)
  }

  const endpoint = handle.url.replace(/^http/, 'ws')
  if (cluster.isWorker) {
    report({ mles: 'listening', url: handle.url })
    process.on('message', (message: unknown) => {
      const asked = typeof message === 'object' && message !== null ? message as Partial<MetricsRequest> : {}
      if (typeof asked.request !== 'number') return
      const request = asked.request
      if (asked.mles === 'metrics?') report({ mles: 'metrics', request, metrics: { ...handle.metrics() } })
      if (asked.mles === 'prometheus?') {
        import('./prometheus.js').then(async ({ sharedMetrics }) => { report({ mles: 'prometheus', request, metrics: await sharedMetrics() }) }, () => {})
      }
    })
  }
  else process.stdout.write(`mles: serving ${handle.url} (Mles WebSocket: ${endpoint}, subprotocol mles-websocket)\n`)
  if (handle.v1Address !== undefined && !cluster.isWorker) process.stdout.write(`mles: v1 TCP clients on port ${handle.v1Address.port}\n`)

  let signals = 0
  const stop = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      process.stderr.write(`mles: second ${signal}; exiting now\n`)
      process.exit(1)
    }
    handle.shutdown().then(() => { process.exit(0) }, (error: Error) => {
      process.stderr.write(`mles: shutdown failed: ${error.message}\n`)
      process.exit(1)
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGUSR1', () => { handle.logMetrics() })
  // Meant for the primary of `--workers`; a worker signalled by mistake stays up.
  if (cluster.isWorker) process.on('SIGUSR2', () => {})
  process.on('SIGHUP', () => {
    handle.reloadCertificates().catch((error: Error) => { handle.app.log.error({ err: error }, 'mles: certificate reload failed; keeping the old one') })
  })
}

/** A worker's certificates under ACME: asked of the primary now, and replaced whenever it sends new ones. */
function certificatesFromPrimary (config: ServerConfig): PrimaryCertificates {
  const certificates = new PrimaryCertificates(config.domains)
  process.on('message', (message: unknown) => {
    if (isCertificatesMessage(message)) certificates.install(message.certificates)
  })
  process.send?.({ mles: 'certificates?' } satisfies CertificatesRequest)
  return certificates
}

/**
 * With ACME under `--workers`: the primary owns the account and the
 * certificate cache, orders and renews, answers http-01 (and redirects) on
 * `--http-port`, and sends every worker the certificates — when it asks, and
 * again after each issuance or renewal.
 */
async function startPrimaryAcme (config: ServerConfig, pool: WorkerPool, httpsPort: () => number): Promise<() => Promise<void>> {
  const { AcmeCertificates, configureAcmeTransport } = await import('./acme.js')
  const { startPlainHttp } = await import('./plain-http.js')
  await configureAcmeTransport(config.acmeCaFile, config.acme.requestRetries)
  let acme: InstanceType<typeof AcmeCertificates> | undefined
  const { app } = await startPlainHttp(config, { logger: { level: config.logLevel } }, (token) => acme?.challengeResponse(token), httpsPort)
  acme = new AcmeCertificates({ domains: config.domains, directoryUrl: config.acmeDirectory, email: config.email, cacheDir: config.cache, caFile: config.acmeCaFile, tuning: config.acme }, app.log)
  const held = acme
  const message = (): CertificatesMessage => ({ mles: 'certificates', certificates: held.pems() })
  pool.onMessage = (worker, received) => {
    if (typeof received === 'object' && received !== null && (received as { mles?: unknown }).mles === 'certificates?') worker.send(message())
  }
  held.onInstalled = () => { pool.broadcast(message()) }
  await held.start()
  return async () => {
    held.stop()
    await app.close()
  }
}

/** `mles --workers N`: starts and watches the workers, which share the port. */
async function runPrimary (config: ServerConfig): Promise<void> {
  const pool = new WorkerPool({
    count: config.workers,
    startTimeoutMs: 60_000,
    stopTimeoutMs: config.shutdownTimeoutMs + 5000,
    say: (line) => { process.stdout.write(line + '\n') },
    complain: (line) => { process.stderr.write(line + '\n') }
  })
  // SIGINT from a terminal reaches the workers too; they shut down by themselves.
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    metricsServer?.close()
    Promise.all([pool.stop(), stopAcme?.()]).then(() => { process.exit(0) }, () => { process.exit(1) })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // The metrics log line of the whole server: every worker's, summed (what one process logs alone), in pino's form as the workers log.
  const logMetrics = (): void => {
    pool.collectMetrics().then((all) => {
      const metrics = sumMetrics(all)
      process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, hostname: hostname(), workers: all.length, metrics, msg: metricsLine(metrics) }) + '\n')
    }, (error: Error) => { process.stderr.write(`mles: collecting the workers' metrics failed: ${error.message}\n`) })
  }
  const logsInfo = ['info', 'debug', 'trace'].includes(config.logLevel)
  process.on('SIGUSR1', () => { if (logsInfo) logMetrics() })
  if (config.metricsLogIntervalSec > 0 && logsInfo) setInterval(logMetrics, config.metricsLogIntervalSec * 1000).unref()
  process.on('SIGHUP', () => { pool.forward('SIGHUP') })
  process.on('SIGUSR2', () => {
    pool.replaceAll().catch((error: Error) => { process.stderr.write(`mles: replacing workers failed: ${error.message}\n`) })
  })

  // With --metrics-listen the primary serves the metrics of every worker together.
  let metricsServer: import('node:http').Server | undefined
  if (config.metricsListen !== undefined) {
    const { startMetricsListener, workersRegistry } = await import('./prometheus.js')
    try {
      const { server, address } = await startMetricsListener(workersRegistry(async () => await pool.collectPrometheus()), config.metricsListen.host, config.metricsListen.port)
      metricsServer = server
      process.stdout.write(`mles: metrics of all workers at http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}/metrics\n`)
    } catch (error) {
      process.stderr.write(`mles: cannot listen on ${config.metricsListen.host}:${config.metricsListen.port} for metrics: ${(error as Error).message}\n`)
      process.exit(1)
    }
  }

  let workersUrl: string | undefined
  let stopAcme: (() => Promise<void>) | undefined
  if (config.tls === 'acme') {
    try {
      stopAcme = await startPrimaryAcme(config, pool, () => workersUrl === undefined ? config.port : Number(new URL(workersUrl).port || 443))
    } catch (error) {
      process.stderr.write(`mles: ${(error as Error).message}\n`)
      process.exit(1)
    }
  }

  let url: string
  try {
    url = await pool.start()
    workersUrl = url
  } catch (error) {
    process.stderr.write(`mles: a worker failed to start: ${(error as Error).message}\n`)
    await pool.stop()
    process.exit(1)
  }
  const endpoint = url.replace(/^http/, 'ws')
  process.stdout.write(`mles: serving ${url} (Mles WebSocket: ${endpoint}, subprotocol mles-websocket) with ${config.workers} workers (primary ${process.pid}; SIGUSR2 replaces them)\n`)
}
