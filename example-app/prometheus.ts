import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
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

/** Serves `GET /metrics` from `registry` on its own listener, apart from the public port. */
export async function startMetricsListener (registry: Registry, host: string, port: number): Promise<{ server: Server, address: AddressInfo }> {
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
