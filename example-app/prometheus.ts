import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { AggregatorRegistry, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { MlesMetricsSnapshot } from '../src/index.js'
import { EXTRA_METRICS, REFERENCE_METRICS } from './metrics.js'

// `--metrics-listen`: loaded only with that flag, so prom-client (an optional
// peer dependency) is needed only then.

/**
 * A Prometheus registry with the Mles metrics (as `mles_<name>`, read from
 * `snapshot()` at scrape time) and prom-client's process metrics.
 */
export function metricsRegistry (snapshot: () => MlesMetricsSnapshot & Record<string, number>): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of [...REFERENCE_METRICS, ...EXTRA_METRICS, 'static_compressions', 'static_cache_hits']) {
    // eslint-disable-next-line no-new
    new Gauge({
      name: `mles_${name}`,
      help: `Mles ${name.replace(/_/g, ' ')}`,
      registers: [registry],
      collect () { this.set(snapshot()[name] ?? 0) }
    })
  }
  return registry
}

/** What the metrics listener serves: a registry, or the workers' metrics together. */
export interface MetricsSource {
  metrics: () => Promise<string>
  readonly contentType: string
}

/** A worker's registry, given to the primary when it asks (`sharedMetrics`). */
let shared: Registry | null = null

/**
 * In a worker of `mles --workers N`: `registry` is what the worker gives the
 * primary for `/metrics` (the worker serves no metrics listener of its own),
 * with one more series of this worker's connections, labelled by worker.
 */
export function shareWithPrimary (registry: Registry, worker: string, connections: () => number): void {
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'mles_worker_active_connections',
    help: 'Mles active connections of one worker',
    labelNames: ['worker'],
    registers: [registry],
    collect () { this.set({ worker }, connections()) }
  })
  shared = registry
}

/** The shared registry as JSON (what prom-client's cluster support sends its primary); empty before the server is up. */
export async function sharedMetrics (): Promise<unknown[]> {
  return shared === null ? [] : await shared.getMetricsAsJSON()
}

/**
 * The primary of `mles --workers N`: `GET /metrics` answers with the metrics
 * of every worker that listens, aggregated by prom-client's cluster
 * aggregation (`AggregatorRegistry.aggregate`: each Mles counter and gauge
 * summed, the per-worker series side by side). prom-client's own
 * `clusterMetrics()` asks every forked worker, and one still starting never
 * answers: a scrape during a restart would time out.
 */
export function workersRegistry (collect: () => Promise<unknown[][]>): MetricsSource {
  return {
    metrics: async () => await AggregatorRegistry.aggregate(await collect() as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics(),
    contentType: new Registry().contentType
  }
}

/** Serves `GET /metrics` from `registry` on its own listener, apart from the public port. */
export async function startMetricsListener (registry: MetricsSource, host: string, port: number): Promise<{ server: Server, address: AddressInfo }> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n')
      return
    }
    registry.metrics().then((text) => {
      response.writeHead(200, { 'content-type': registry.contentType }).end(text)
    }, (error: Error) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  return { server, address: server.address() as AddressInfo }
}
