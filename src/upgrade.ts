import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { WebSocket, WebSocketServer } from 'ws'
import { normalizeOrigin, type ResolvedOptions } from './options.js'
import { PerIpLimitError, type PerIpLimit } from './per-ip-limit.js'
import { MLES_PROTOCOL } from './protocol/subprotocol.js'
import type { MlesEndpoint } from './endpoint.js'

const STRATEGY = 'mlesWebSocketUpgrade'
const UPGRADE = 'websocket'
const kMlesUpgrade = Symbol('mles.upgrade')
/** The `Retry-After` of an upgrade refused at `maxConnections`, in seconds. */
const RETRY_AFTER_FULL_S = 10

interface MarkedRequest extends IncomingMessage {
  [kMlesUpgrade]?: true
}

/**
 * Routes WebSocket upgrades apart from plain requests on the same path, so the
 * Mles endpoint at `/` and the app's own `GET /` (say, a static index.html)
 * live side by side. A path with no Mles route falls back to the app's routes.
 */
type ConstraintStrategy = Parameters<FastifyInstance['addConstraintStrategy']>[0]
type RouteStore = ReturnType<ReturnType<ConstraintStrategy['storage']>['get']>

const upgradeStrategy: ConstraintStrategy = {
  name: STRATEGY,
  mustMatchWhenDerived: false,
  storage () {
    const handlers = new Map<string, RouteStore>()
    return {
      get: (value: string) => handlers.get(value) ?? null,
      set: (value: string, store: RouteStore) => { handlers.set(value, store) }
    }
  },
  deriveConstraint (request: IncomingMessage): string | undefined {
    const upgrade = request.headers.upgrade
    return typeof upgrade === 'string' && upgrade.toLowerCase() === UPGRADE ? UPGRADE : undefined
  },
  validate (value: unknown): void {
    if (value !== UPGRADE) throw new Error(`${STRATEGY} constraint accepts only "${UPGRADE}"`)
  }
}

/** Whether a Sec-WebSocket-Protocol header offers `mles-websocket`, alone or among others. */
export function offersMlesProtocol (header: string | undefined): boolean {
  if (header === undefined) return false
  for (const token of header.split(',')) {
    if (token.trim() === MLES_PROTOCOL) return true
  }
  return false
}

/**
 * Makes the shared ws server answer exactly `mles-websocket` on Mles upgrades
 * (its default picks the first protocol offered) and leaves every other route's
 * choice as it was.
 */
function selectMlesProtocol (wss: WebSocketServer): void {
  const previous = wss.options.handleProtocols
  wss.options.handleProtocols = (protocols: Set<string>, request: IncomingMessage): string | false => {
    if ((request as MarkedRequest)[kMlesUpgrade] === true) return MLES_PROTOCOL
    if (typeof previous === 'function') return previous(protocols, request)
    const first = protocols.values().next()
    return first.done === true ? false : first.value
  }
}

/**
 * @fastify/websocket leaves the upgrade's ServerResponse attached to the
 * socket and its request and reply captured by an 'error' listener, for the
 * life of the connection: about 2.4 KB per idle connection (measured with
 * `npm run bench -- --workloads W3`). Release both; the session brings its own
 * 'error' listener.
 */
function releaseUpgradeRequest (ws: WebSocket): void {
  const socket = (ws as unknown as { _socket: Socket & { _httpMessage?: ServerResponse | null } })._socket
  socket._httpMessage?.detachSocket(socket)
  ws.removeAllListeners('error')
}

/** Whether Node took the request as an upgrade (a request merely naming `Upgrade: websocket` is not one). */
function isUpgrade (request: FastifyRequest): boolean {
  return (request.raw as IncomingMessage & { upgrade?: boolean }).upgrade === true
}

/**
 * Closes the socket of an upgrade answered with plain HTTP, once the answer is
 * out. @fastify/websocket writes that answer on a ServerResponse of its own,
 * which Node's server never ends, and destroys the socket in its onResponse
 * hook only if its onRequest hook ran first; an app's onRequest hook that
 * throws or replies before it leaves the socket open, and app.close() waits
 * for it. A plain request naming `Upgrade: websocket` is not an upgrade to
 * Node (`upgrade` is false) and its keep-alive stays the server's business.
 */
function closeRefusedUpgrade (request: FastifyRequest, reply: FastifyReply): void {
  if (!isUpgrade(request)) return
  const socket = request.raw.socket
  reply.header('connection', 'close')
  reply.raw.once('finish', () => { socket.destroySoon() })
}

function refuse (reply: FastifyReply, statusCode: number, error: string, message: string): FastifyReply {
  return reply.code(statusCode).send({ statusCode, error, message })
}

/**
 * The origin policy (options `allowedOrigins`, `requireOrigin`): whether an
 * upgrade's `Origin` may open a connection — a boolean, or a promise of one
 * when the app decides. A browser always sends `Origin` on a WebSocket
 * upgrade, and sends the site's cookies with it even from another site's
 * page, so this is what stops cross-site WebSocket hijacking.
 */
function originPolicy (options: ResolvedOptions): ((origin: string | undefined, request: FastifyRequest) => boolean | Promise<boolean>) | null {
  const { allowedOrigins, requireOrigin } = options
  if (allowedOrigins === null) return requireOrigin ? (origin) => origin !== undefined : null
  if (typeof allowedOrigins === 'function') {
    return (origin, request) => origin === undefined ? !requireOrigin : allowedOrigins(origin, request)
  }
  return (origin) => {
    if (origin === undefined) return !requireOrigin
    const normalized = normalizeOrigin(origin)
    return normalized !== null && allowedOrigins.has(normalized)
  }
}

/** A WebSocket endpoint of the plugin: where it is, what it must be offered, who takes the connections. */
export interface UpgradeRoute {
  url: string
  /** Whether a `Sec-WebSocket-Protocol` header offers what the endpoint speaks (`mles-websocket`). */
  offers: (header: string | undefined) => boolean
  accept: (ws: WebSocket, request: FastifyRequest) => void
}

/** Apps whose ws server already answers `mles-websocket` on our routes. */
const protocolSelected = new WeakSet<WebSocketServer>()

/**
 * Adds an upgrade route — the Mles endpoint at `path` unless `route` says
 * otherwise — in an encapsulated context of its own: refused while shutting
 * down, then the per-IP limit (`perIp`, null when off), then the gate
 * (subprotocol, origin); then the socket goes to the server.
 */
export async function addUpgradeRoute (app: FastifyInstance, server: MlesEndpoint, perIp: PerIpLimit | null, route?: UpgradeRoute): Promise<void> {
  if (!app.hasConstraintStrategy(STRATEGY)) app.addConstraintStrategy(upgradeStrategy)
  if (!protocolSelected.has(app.websocketServer)) {
    selectMlesProtocol(app.websocketServer)
    protocolSelected.add(app.websocketServer)
  }
  const endpoint: UpgradeRoute = route ?? { url: server.options.path, offers: offersMlesProtocol, accept: (ws, request) => { server.accept(ws, request) } }

  const refuseWhileClosing = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (server.isClosed) {
      refuse(reply, 503, 'Service Unavailable', 'the Mles server is shutting down')
    } else if (!server.admitsConnection(isUpgrade(request) ? request.raw.socket : undefined)) {
      refuse(reply.header('retry-after', String(RETRY_AFTER_FULL_S)), 503, 'Service Unavailable', `the server holds its most connections (${server.options.maxConnections}); try again later`)
    } else {
      done()
    }
  }

  const originAllowed = originPolicy(server.options)
  const refuseOrigin = (request: FastifyRequest, reply: FastifyReply, origin: string | undefined): void => {
    server.counters.rejectedOrigin++
    request.log.debug({ origin }, 'mles: upgrade from an origin not allowed; refusing with 403')
    server.notices.write('info', 'origin', { origin: origin?.slice(0, 100) ?? null }, 'mles: upgrades from an origin not allowed (allowedOrigins) refused with 403')
    refuse(reply, 403, 'Forbidden', origin === undefined ? 'an Origin header is required' : `origin ${JSON.stringify(origin.slice(0, 100))} is not allowed`)
  }

  const gate = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (!endpoint.offers(request.headers['sec-websocket-protocol'])) {
      refuse(reply, 400, 'Bad Request', `the WebSocket upgrade must offer the subprotocol "${MLES_PROTOCOL}"`)
      return
    }
    if (originAllowed === null) {
      admit(request, done)
      return
    }
    const origin = request.headers.origin
    let allowed: boolean | Promise<boolean>
    try {
      allowed = originAllowed(origin, request)
    } catch (error) {
      originCheckFailed(request, reply, error)
      return
    }
    if (allowed instanceof Promise) {
      allowed.then((yes) => {
        if (yes === true) admit(request, done)
        else refuseOrigin(request, reply, origin)
      }, (error: unknown) => { originCheckFailed(request, reply, error) })
    } else if (allowed === true) {
      admit(request, done)
    } else {
      refuseOrigin(request, reply, origin)
    }
  }

  const admit = (request: FastifyRequest, done: () => void): void => {
    (request.raw as MarkedRequest)[kMlesUpgrade] = true
    done()
  }

  const originCheckFailed = (request: FastifyRequest, reply: FastifyReply, error: unknown): void => {
    request.log.error({ err: error }, 'mles: the allowedOrigins function threw; refusing with 500')
    refuse(reply, 500, 'Internal Server Error', 'the origin check failed')
  }

  await app.register(async (scope) => {
    // onSend runs for every answer on the route, however early the refusal; a hijacked (accepted) upgrade sends none.
    scope.addHook('onSend', (request, reply, payload, done) => {
      server.upgradeAnswered(request.raw.socket)
      closeRefusedUpgrade(request, reply)
      done(null, payload)
    })
    if (perIp !== null) await perIp.register(scope)
    // Only the limit's refusals are ours to answer; anything else goes on to the app's error handler.
    scope.setErrorHandler((error: FastifyError, _request, reply) => {
      if (!(error instanceof PerIpLimitError)) throw error
      refuse(reply, 429, 'Too Many Requests', error.message)
    })
    scope.route({
      method: 'GET',
      url: endpoint.url,
      exposeHeadRoute: false,
      constraints: { [STRATEGY]: UPGRADE },
      // Reading request.ip makes Node cache the peer address on the socket for its whole life, so only a limit on reads it.
      ...(perIp === null ? {} : { config: { rateLimit: perIp.routeConfig('connections') } }),
      // @fastify/rate-limit appends its onRequest hook after this one; the gate comes after both.
      onRequest: refuseWhileClosing,
      preValidation: gate,
      // Reached only by a request that names `Upgrade: websocket` without being an upgrade.
      handler: (_request, reply) => {
        refuse(reply.header('upgrade', UPGRADE).header('connection', 'Upgrade'), 426, 'Upgrade Required', 'send a WebSocket upgrade (Connection: Upgrade)')
      },
      wsHandler: (socket, request) => {
        releaseUpgradeRequest(socket)
        // Keep a pre-registered @fastify/websocket's shutdown from closing our sockets without a code; ours closes them with 1001.
        app.websocketServer.clients?.delete(socket)
        endpoint.accept(socket, request)
      }
    })
  })
}
