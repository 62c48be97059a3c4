import { connect, type Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'

/**
 * A minimal WebSocket client for load generation: hand-made upgrade, frame
 * parsing without copies, masked sends with a zero key (valid per RFC 6455 and
 * free of XOR work). It exists so that one generator process can count
 * millions of frames per second, which a full client cannot; correctness
 * checks live in the test suite, not here.
 */
export type FrameHandler = (opcode: number, data: Buffer, start: number, end: number) => void

// Sends within one event-loop turn are corked together: one syscall per socket per turn.
const corked: Socket[] = []
let flushScheduled = false
function flush (): void {
  flushScheduled = false
  for (const socket of corked) socket.uncork()
  corked.length = 0
}
function corkForTurn (socket: Socket): void {
  if (socket.writableCorked > 0) return
  socket.cork()
  corked.push(socket)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flush)
  }
}

/** Whether `open` speaks TLS (W6): set once per generator process, before any connection. */
let secure = false
export function useTls (on: boolean): void {
  secure = on
}

const OP_CLOSE = 0x8
const OP_PING = 0x9
const OP_PONG = 0xa

export class RawWebSocket {
  private pending: Buffer | null = null
  private closed = false

  private constructor (readonly socket: Socket, private readonly onFrame: FrameHandler) {
    socket.on('data', (chunk: Buffer) => { this.consume(chunk) })
    socket.on('error', () => { this.closed = true })
    socket.on('close', () => { this.closed = true })
  }

  /** Opens `ws://127.0.0.1:port{path}` (`wss://` after `useTls(true)`; the bench's own certificate, not verified), offering `protocol` when given. */
  static async open (port: number, path: string, protocol: string | null, onFrame: FrameHandler): Promise<RawWebSocket> {
    const tcp = connect({ port, host: '127.0.0.1', noDelay: true })
    const socket: Socket = secure ? connectTls({ socket: tcp, servername: 'localhost', rejectUnauthorized: false }) : tcp
    return await new Promise<RawWebSocket>((resolve, reject) => {
      let head = Buffer.alloc(0)
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`upgrade to port ${port} timed out`)) }, 15_000)
      const fail = (error: Error): void => { clearTimeout(timer); reject(error) }
      socket.once('error', fail)
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
          (protocol === null ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) + '\r\n')
      })
      const onHead = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk])
        const end = head.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.off('data', onHead)
        socket.off('error', fail)
        clearTimeout(timer)
        const status = head.subarray(0, head.indexOf('\r\n')).toString()
        if (!/^HTTP\/1\.1 101/.test(status)) {
          socket.destroy()
          reject(new Error(`upgrade refused: ${status}`))
          return
        }
        const client = new RawWebSocket(socket, onFrame)
        // Frames that came with the 101 are handled on the next turn, once the caller holds the client.
        const rest = head.subarray(end + 4)
        if (rest.length > 0) {
          socket.pause()
          setImmediate(() => { client.consume(Buffer.from(rest)); socket.resume() })
        }
        resolve(client)
      }
      socket.on('data', onHead)
    })
  }

  get isClosed (): boolean {
    return this.closed
  }

  private consume (chunk: Buffer): void {
    let buffer = chunk
    if (this.pending !== null) {
      buffer = Buffer.concat([this.pending, chunk])
      this.pending = null
    }
    let at = 0
    const length = buffer.length
    while (length - at >= 2) {
      const opcode = buffer[at] & 0x0f
      let size = buffer[at + 1] & 0x7f
      let header = 2
      if (size === 126) {
        if (length - at < 4) break
        size = buffer.readUInt16BE(at + 2)
        header = 4
      } else if (size === 127) {
        if (length - at < 10) break
        size = buffer.readUInt32BE(at + 6)
        header = 10
      }
      const start = at + header
      const end = start + size
      if (end > length) break
      if (opcode >= OP_CLOSE) {
        this.control(opcode, buffer.subarray(start, end))
      } else {
        this.onFrame(opcode, buffer, start, end)
      }
      at = end
    }
    if (at < length) this.pending = Buffer.from(buffer.subarray(at))
  }

  private control (opcode: number, payload: Buffer): void {
    if (opcode === OP_PING) this.send(OP_PONG, payload)
    else if (opcode === OP_CLOSE) {
      this.closed = true
      this.socket.end()
    }
  }

  /** Sends one frame (opcode 1 text, 2 binary), masked with a zero key. */
  send (opcode: number, payload: Buffer | string): void {
    if (this.closed) return
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload
    const size = data.length
    const header = size < 126 ? 6 : size < 65536 ? 8 : 14
    const frame = Buffer.allocUnsafe(header + size)
    frame[0] = 0x80 | opcode
    if (size < 126) {
      frame[1] = 0x80 | size
    } else if (size < 65536) {
      frame[1] = 0x80 | 126
      frame.writeUInt16BE(size, 2)
    } else {
      frame[1] = 0x80 | 127
      frame.writeUInt32BE(0, 2)
      frame.writeUInt32BE(size, 6)
    }
    frame.writeUInt32BE(0, header - 4) // the zero masking key
    data.copy(frame, header)
    corkForTurn(this.socket)
    this.socket.write(frame)
  }

  pause (): void {
    this.socket.pause()
  }

  close (): void {
    this.closed = true
    this.socket.destroy()
  }
}
