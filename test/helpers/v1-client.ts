import { connect, type Socket } from 'node:net'
import { encodeFrame, V1_PREFIX_BYTES, V1FrameReader } from '../../src/v1/frame.js'
import { addressString, cidOfKey, keyStrings, v1Key, type V1KeyMode } from '../../src/v1/key.js'
import { decodeMsg, encodeMsg, type V1Msg } from '../../src/v1/msg.js'
import type { MlesOptions } from '../../src/index.js'
import { startMles, type RunningServer } from './server.js'

export interface V1Received {
  frame: Buffer
  msg: V1Msg
  /** `message` as UTF-8 text. */
  text: string
}

/** A Mles v1 TCP client for tests: keys its frames like the reference's clients, queues what arrives. */
export class V1TestClient {
  private readonly reader = new V1FrameReader()
  private readonly queue: V1Received[] = []
  private waiters: Array<(message: V1Received) => void> = []
  readonly closed: Promise<void>
  key = ''
  cid = 0

  private constructor (readonly socket: Socket, readonly uid: string, readonly channel: string) {
    socket.on('data', (chunk: Buffer) => {
      const frames = this.reader.push(chunk)
      if (!Array.isArray(frames)) throw new Error(`v1 test client: server sent a bad frame (${frames})`)
      for (const frame of frames) {
        const msg = decodeMsg(frame.subarray(V1_PREFIX_BYTES))
        const received = { frame, msg, text: Buffer.from(msg.message).toString('utf8') }
        const waiter = this.waiters.shift()
        if (waiter !== undefined) waiter(received)
        else this.queue.push(received)
      }
    })
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => { socket.once('close', () => { resolve() }) })
  }

  static async connect (port: number, uid: string, channel: string, host = '127.0.0.1'): Promise<V1TestClient> {
    const socket = connect({ port, host })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new V1TestClient(socket, uid, channel)
  }

  /** Connects and sends a join frame (empty message), keyed in `mode` from this socket's own address. */
  static async join (port: number, uid: string, channel: string, mode: V1KeyMode = {}): Promise<V1TestClient> {
    const client = await V1TestClient.connect(port, uid, channel)
    const address = addressString(client.socket.localAddress ?? '', client.socket.localPort ?? 0)
    client.key = v1Key(keyStrings(mode, address, uid, channel))
    client.cid = cidOfKey(client.key)
    client.send('')
    return client
  }

  /** A frame of this client's with `message`, keyed with its join key. */
  frame (message: string | Uint8Array): Buffer {
    const bytes = typeof message === 'string' ? Buffer.from(message) : message
    return encodeFrame(encodeMsg({ uid: this.uid, channel: this.channel, message: bytes }), this.cid, this.key)
  }

  send (message: string | Uint8Array): void {
    this.socket.write(this.frame(message))
  }

  write (bytes: Uint8Array): void {
    this.socket.write(bytes)
  }

  async next (timeoutMs = 3000): Promise<V1Received> {
    const queued = this.queue.shift()
    if (queued !== undefined) return queued
    return await new Promise<V1Received>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== deliver)
        reject(new Error(`v1 test client ${this.uid}: no frame within ${timeoutMs} ms`))
      }, timeoutMs)
      const deliver = (message: V1Received): void => { clearTimeout(timer); resolve(message) }
      this.waiters.push(deliver)
    })
  }

  get pending (): number {
    return this.queue.length
  }

  /** Resolves true if the server closed the connection within `timeoutMs`. */
  async closedWithin (timeoutMs = 3000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const result = await Promise.race([this.closed.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(false) }, timeoutMs) })])
    clearTimeout(timer)
    return result
  }

  close (): void {
    this.socket.end()
  }
}

/** A plugin server with the v1 listener on a free port of 127.0.0.1 (limits off); `options.v1` adds to it. */
export async function startV1Server (options: MlesOptions = {}): Promise<{ server: RunningServer, v1Port: number }> {
  const server = await startMles({ messagesPerSecond: 0, perIpLimit: 0, ...options, v1: { port: 0, host: '127.0.0.1', ...options.v1 } })
  const address = server.app.mles.v1Address()
  if (address === null) throw new Error('the v1 listener did not start')
  return { server, v1Port: address.port }
}
