import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fastifyPlugin from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'
import { loadOptionalParts } from './features.js'
import { resolveOptions, type MlesOptions } from './options.js'
import type { MlesApi } from './api.js'
import { MlesEndpoint } from './endpoint.js'
import { PerIpLimit } from './per-ip-limit.js'
import { addUpgradeRoute } from './upgrade.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Server-side access to the Mles channels (publish, subscribe, history, metrics). */
    readonly mles: MlesApi
  }
}

async function mles (app: FastifyInstance, rawOptions: MlesOptions): Promise<void> {
  const options = resolveOptions(rawOptions)
  if (options.authorize !== undefined && rawOptions.allowedOrigins === undefined) {
    app.log.warn('fastify-mles: authorize is set but allowedOrigins is not, so a page of any other site can open a channel with your visitors\' cookies; set allowedOrigins to your site\'s origins (or [\'*\'] to allow any)')
  }

  // Share @fastify/websocket when the app already has it (its ws options then apply); otherwise bring it with ours.
  if (!app.hasDecorator('websocketServer')) {
    await app.register(fastifyWebsocket, {
      options: {
        maxPayload: options.maxFrameBytes,
        perMessageDeflate: false,
        clientTracking: false
      },
      // ws closes a connection with the right code on protocol errors; the session counts them.
      errorHandler: () => {},
      preClose: (done) => { app.websocketServer.close(); done() }
    })
  }

  const server = new MlesEndpoint(options, app.log, await loadOptionalParts(options))
  await server.start()
  app.decorate('mles', server as MlesApi)
  // preClose, not onClose: upgraded sockets hold the HTTP server open, so they must close before it can.
  app.addHook('preClose', async () => {
    refuseUpgradesWhileClosing(app)
    await server.close()
  })
  let perIp: PerIpLimit | null
  try {
    perIp = await PerIpLimit.create(server)
  } catch (error) {
    await server.close()
    throw error
  }
  if (perIp !== null) app.addHook('onClose', async () => { await perIp.close() })
  await addUpgradeRoute(app, server, perIp)
  const v1WebSocketPath = options.v1?.webSocketPath
  if (v1WebSocketPath !== undefined) {
    const { offersV1Protocol } = await import('./v1/websocket.js')
    await addUpgradeRoute(app, server, perIp, { url: v1WebSocketPath, offers: offersV1Protocol, accept: (ws, request) => { server.acceptV1WebSocket(ws, request) } })
  }
  if (options.api !== undefined) {
    const { addHttpApi } = await import('./http-api.js')
    await addHttpApi(app, server, perIp)
  }
}

const SHUTTING_DOWN_BODY = JSON.stringify({ statusCode: 503, error: 'Service Unavailable', message: 'the server is shutting down' })
const SHUTTING_DOWN = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n' +
  `Content-Length: ${Buffer.byteLength(SHUTTING_DOWN_BODY)}\r\n\r\n${SHUTTING_DOWN_BODY}`

/**
 * From the start of `app.close()`, every upgrade gets 503 and its socket is
 * closed. Otherwise Fastify's own 503 for a closing server goes to the
 * socket @fastify/websocket keeps for the upgrade, nothing ever ends it, and
 * the HTTP server waits for it forever (a client reconnecting during the
 * shutdown is enough).
 */
function refuseUpgradesWhileClosing (app: FastifyInstance): void {
  const httpServer = app.server
  for (const listener of httpServer.listeners('upgrade')) httpServer.off('upgrade', listener as (...args: unknown[]) => void)
  httpServer.on('upgrade', (_request: unknown, socket: Duplex) => {
    socket.on('error', () => {})
    socket.end(SHUTTING_DOWN)
  })
}

/**
 * The Mles v2 endpoint as a Fastify 5 plugin:
 * `await app.register(mles, { historyLimit: 200 })`.
 */
const plugin: FastifyPluginAsync<MlesOptions> = fastifyPlugin(mles, {
  fastify: '5.x',
  name: 'fastify-mles'
})

export default plugin
export { plugin as mles }
export type { MlesOptions, MlesRedisOptions, MlesRedisSettings, MlesV1Options, ResolvedOptions, MlesAuthorize, MlesAuthorization, MlesJoinRequest, MlesOriginCheck, MlesHttpApiOptions } from './options.js'
export { MlesOptionError, DEFAULT_OPTIONS } from './options.js'
export { MlesMissingPackageError, type OptionalPackage } from './optional.js'
export type { MlesApi, MlesChannelInfo, MlesHistoryFrame, MlesPublishOptions, MlesMemberEvent, MlesMemberEventName, MlesMemberListener } from './api.js'
export type { MlesFrame, MlesFrameListener } from './hub/channel.js'
export type { MlesMetricsSnapshot } from './metrics.js'
export { MLES_PROTOCOL } from './protocol/subprotocol.js'
export { CloseCode, CloseReason } from './protocol/close.js'
export { computeAuth } from './protocol/siphash.js'
