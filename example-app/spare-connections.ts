import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { FastifyInstance } from 'fastify'

/**
 * Browsers open connections ahead of need (Chromium's preconnect), and such
 * a connection may never send a request. Node's `server.close()` waits for
 * it, and `closeIdleConnections()` does not count it as idle, so without
 * this `app.close()` waits until the browser gives it up (minutes). From
 * `preClose` on, every connection that has not sent a request is closed, at
 * once or as it arrives; connections with a request keep Fastify's graceful
 * close. Register after the Mles plugin, so that its members are closed with
 * 1001 first.
 */
export function closeSpareConnectionsOnClose (app: FastifyInstance): void {
  const server = app.server
  const spare = new Set<Socket>()
  let closing = false
  // Over TLS a connection counts from its handshake: the socket a request names is the TLS one.
  const connectionEvent = server instanceof TlsServer ? 'secureConnection' : 'connection'
  server.on(connectionEvent, (socket: Socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    spare.add(socket)
    socket.once('close', () => { spare.delete(socket) })
  })
  const used = (request: IncomingMessage): void => { spare.delete(request.socket) }
  server.on('request', used)
  server.on('upgrade', used)
  app.addHook('preClose', (done) => {
    closing = true
    for (const socket of spare) socket.destroy()
    spare.clear()
    done()
  })
}
