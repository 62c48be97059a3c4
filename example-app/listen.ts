import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'

/**
 * Connections each listener lets wait to be accepted (Node's default is 511):
 * after a restart thousands of clients reconnect within a second, and a full
 * backlog drops their SYNs, retried only after 1 s, then 3 s. The kernel caps
 * it at `net.core.somaxconn`.
 */
export const LISTEN_BACKLOG = 4096

/** Listens on `host`; `::` (every address) falls back to IPv4-only where IPv6 is off. */
export async function listen (app: FastifyInstance, host: string, port: number, backlog = LISTEN_BACKLOG): Promise<AddressInfo> {
  try {
    await app.listen({ host, port, backlog })
  } catch (error) {
    if (host !== '::' || (error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw error
    app.log.warn('mles: IPv6 unavailable; listening on IPv4 only')
    await app.listen({ host: '0.0.0.0', port, backlog })
  }
  return app.server.address() as AddressInfo
}

/** One line saying why a port could not be had. */
export function describeListenError (error: unknown, what: string, host: string, port: number): Error {
  const code = (error as NodeJS.ErrnoException).code
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
  if (code === 'EACCES') return new Error(`cannot listen on ${where} for ${what}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; see the README)`)
  if (code === 'EADDRINUSE') return new Error(`cannot listen on ${where} for ${what}: the address is already in use`)
  return new Error(`cannot listen on ${where} for ${what}: ${(error as Error).message}`)
}
