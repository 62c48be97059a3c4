import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { V1Connection, type V1CloseEvent, type V1ServerAddress } from './client.js'
import { V1_MAX_PAYLOAD_BYTES } from './frame.js'
import type { V1KeyMode } from './key.js'
import { decodeMsg } from './msg.js'
import { offersV1Protocol, toBuffer, V1_WS_PROTOCOL } from './websocket.js'

/** The port the reference's proxy listens on. */
export const V1_WS_PROXY_PORT = 8076

/** Past this many bytes waiting for a slow WebSocket client, the proxy stops reading its v1 connections until they are sent. */
const WS_BACKLOG_BYTES = 4 * 1024 * 1024

export interface V1WebSocketProxyOptions {
  /** The v1 server every channel is opened on. */
  server: V1ServerAddress
  /** Where the proxy listens for WebSocket clients; the reference's is 0.0.0.0:8076. */
  host: string
  port: number
  /** `MLES_KEY` / `MLES_ADDR_KEY`: how each v1 connection keys its frames (in address mode, over the proxy's own address). */
  keyMode: V1KeyMode
  /** One line about each client that was refused or cut, and why. */
  log?: (line: string) => void
}

/**
 * The WebSocket proxy of `mles-client --v1 … --ws-proxy` (SPEC-v1 §9): lets
 * WebSocket clients that speak CBOR (browsers, say) reach a v1 server. Each
 * WebSocket message is a bare CBOR `Msg`; the proxy sends it on, untouched
 * (its 16 leading random bytes too), behind the 16-byte v1 prefix, over one
 * TCP connection per channel of that WebSocket connection — the reference
 * binds a WebSocket connection to one channel, this proxy also multiplexes
 * several. What the server sends goes back as binary messages, the prefix
 * stripped. An empty message ends the connection's TCP side.
 */
export class V1WebSocketProxy {
  private readonly clients = new Set<ProxiedClient>()

  private constructor (private readonly http: Server, private readonly wss: WebSocketServer, private readonly options: V1WebSocketProxyOptions) {}

  static async start (options: V1WebSocketProxyOptions): Promise<V1WebSocketProxy> {
    const wss = new WebSocketServer({ noServer: true, maxPayload: V1_MAX_PAYLOAD_BYTES, handleProtocols: () => V1_WS_PROTOCOL, clientTracking: false })
    const http = createServer((_request, response) => {
      response.writeHead(426, { 'content-type': 'text/plain; charset=utf-8', connection: 'close', upgrade: 'websocket' })
      response.end(`a WebSocket upgrade with the subprotocol "${V1_WS_PROTOCOL}" is expected here\n`)
    })
    const proxy = new V1WebSocketProxy(http, wss, options)
    http.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => { proxy.upgrade(request, socket, head) })
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen({ host: options.host, port: options.port }, () => {
        http.off('error', reject)
        resolve()
      })
    })
    return proxy
  }

  get address (): AddressInfo {
    return this.http.address() as AddressInfo
  }

  /** WebSocket clients connected now. */
  get connections (): number {
    return this.clients.size
  }

  private upgrade (request: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => {})
    if (!offersV1Protocol(request.headers['sec-websocket-protocol'])) {
      this.options.log?.(`refused a WebSocket upgrade from ${socket.remoteAddress ?? '?'}: it does not offer the subprotocol ${V1_WS_PROTOCOL}`)
      const body = `the WebSocket upgrade must offer the subprotocol "${V1_WS_PROTOCOL}"\n`
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
      return
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      const client = new ProxiedClient(ws, this.options, () => { this.clients.delete(client) })
      this.clients.add(client)
    })
  }

  /** Stops listening and closes every client (1001) and its v1 connections. */
  async close (): Promise<void> {
    const closed = new Promise<void>((resolve) => { this.http.close(() => { resolve() }) })
    for (const client of this.clients) client.shutdown()
    this.http.closeAllConnections()
    await closed
  }
}

/** One channel of a WebSocket client: its v1 connection, and what waits until it is open. */
interface Channel {
  connection: V1Connection | null
  waiting: Uint8Array[]
}

/** One WebSocket client of the proxy and its v1 connections, one per channel. */
class ProxiedClient {
  private readonly channels = new Map<string, Channel>()
  private closing = false
  /** Bytes sent to the WebSocket and not yet written out. */
  private unsent = 0
  private readingPaused = false
  /** Reading the client is paused until a v1 connection's buffer drains. */
  private clientPaused = false

  constructor (private readonly ws: WebSocket, private readonly options: V1WebSocketProxyOptions, private readonly gone: () => void) {
    ws.on('message', (data: RawData) => { this.message(toBuffer(data)) })
    ws.on('error', () => {})
    ws.on('close', () => {
      this.closing = true
      for (const channel of this.channels.values()) channel.connection?.end()
      this.gone()
    })
  }

  private message (data: Buffer): void {
    if (this.closing) return
    if (data.length === 0) {
      this.endAll()
      return
    }
    const msg = decodeMsg(data)
    if (msg.channel === '') {
      this.close(1007, 'each message must be a CBOR Msg {uid, channel, message}')
      return
    }
    const existing = this.channels.get(msg.channel)
    if (existing === undefined) {
      this.open(msg.uid, msg.channel, data)
    } else if (existing.connection === null) {
      existing.waiting.push(data)
    } else {
      this.send(existing.connection, data)
    }
  }

  private open (uid: string, name: string, first: Uint8Array): void {
    const channel: Channel = { connection: null, waiting: [first] }
    this.channels.set(name, channel)
    V1Connection.open(this.options.server, {
      onPayload: (payload) => { this.deliver(payload) },
      onClose: (event) => { this.linkClosed(name, event) },
      onDrain: () => { this.drained() }
    }).then((connection) => {
      // Closed, or ended by an empty message, while connecting.
      if (this.closing || this.channels.get(name) !== channel) {
        connection.end()
        return
      }
      connection.keyFor(uid, name, this.options.keyMode)
      channel.connection = connection
      for (const payload of channel.waiting.splice(0)) this.send(connection, payload)
      if (this.readingPaused) connection.pause()
    }, (error: Error) => {
      this.channels.delete(name)
      this.close(1011, `cannot reach the v1 server: ${error.message}`)
    })
  }

  private send (connection: V1Connection, payload: Uint8Array): void {
    if (connection.sendPayload(payload)) return
    // The v1 server reads slower than this client sends: stop reading the client until it has.
    if (this.clientPaused) return
    this.clientPaused = true
    this.ws.pause()
  }

  private drained (): void {
    if (!this.clientPaused) return
    this.clientPaused = false
    this.ws.resume()
  }

  private deliver (payload: Buffer): void {
    if (this.closing) return
    this.unsent += payload.length
    this.ws.send(payload, { binary: true }, () => {
      this.unsent -= payload.length
      if (this.readingPaused && this.unsent < WS_BACKLOG_BYTES / 2) this.setReading(true)
    })
    if (!this.readingPaused && this.unsent > WS_BACKLOG_BYTES) this.setReading(false)
  }

  private setReading (on: boolean): void {
    this.readingPaused = !on
    for (const channel of this.channels.values()) {
      if (on) channel.connection?.resume()
      else channel.connection?.pause()
    }
  }

  private linkClosed (name: string, event: V1CloseEvent): void {
    this.channels.delete(name)
    if (this.closing) return
    if (event.local) {
      // Ended by an empty message: the WebSocket goes once every channel has.
      if (this.channels.size === 0) this.close(1000, 'ended')
      return
    }
    const why = event.badFrame !== undefined
      ? `the v1 server sent a bad frame (${event.badFrame})`
      : event.error !== undefined ? `the v1 connection failed: ${event.error.message}` : 'the v1 server closed the connection'
    this.options.log?.(`${why} (channel ${JSON.stringify(name)}); closing the WebSocket client`)
    this.close(event.badFrame !== undefined || event.error !== undefined ? 1011 : 1001, `${why} (channel ${name})`)
  }

  /** An empty message: every v1 connection ends (the server ends those sessions); the WebSocket closes once they are gone. */
  private endAll (): void {
    let open = 0
    for (const [name, channel] of this.channels) {
      if (channel.connection === null) {
        // Not connected yet: drop what waits, and it ends once connected.
        channel.waiting.length = 0
        this.channels.delete(name)
        continue
      }
      channel.connection.end()
      open++
    }
    if (open === 0) this.close(1000, 'ended')
  }

  private close (code: number, reason: string): void {
    if (this.closing) return
    this.closing = true
    for (const channel of this.channels.values()) channel.connection?.end()
    this.ws.close(code, fitReason(reason))
    // A client that never answers the close must not keep its socket (nor the proxy's shutdown).
    setTimeout(() => { this.ws.terminate() }, 2000).unref()
  }

  /** The proxy is shutting down. */
  shutdown (): void {
    this.close(1001, 'the proxy is shutting down')
  }
}

/** A close reason within the 123 bytes a close frame allows. */
function fitReason (reason: string): string {
  let fitted = reason
  while (Buffer.byteLength(fitted) > 123) fitted = fitted.slice(0, -1)
  return fitted
}
