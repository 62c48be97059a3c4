import { connect, type Socket } from 'node:net'
import { encodeFrame, V1_MAX_PAYLOAD_BYTES, V1_PREFIX_BYTES, V1FrameReader } from './frame.js'
import { addressString, cidOfKey, keyStrings, v1Key, type V1KeyMode } from './key.js'
import { decodeMsg, decodeResync, encodeMsg, type V1Msg } from './msg.js'

/** Where a v1 server listens (`parsePeerAddress` in options.ts reads `HOST[:PORT]`). */
export interface V1ServerAddress {
  host: string
  port: number
}

/** What ended a v1 connection. */
export interface V1CloseEvent {
  /** The socket error, if one ended it (a refused connection, a reset). */
  error?: Error
  /** The server sent something that is not a v1 frame: the stream cannot be read on. */
  badFrame?: string
  /** Ended by `end()` on this side. */
  local: boolean
}

export interface V1ConnectionHandlers {
  /** A frame from the server, its 16-byte prefix stripped: a CBOR `Msg` (or a `ResyncMsg`). */
  onPayload: (payload: Buffer) => void
  onClose: (event: V1CloseEvent) => void
  /** What was sent has gone out after a send returned false. */
  onDrain?: () => void
}

/**
 * One TCP connection to a v1 server, as the reference's clients hold it
 * (SPEC-v1 §9): every frame sent carries the key and CID computed once, from
 * the uid and channel of the first `Msg` and either the shared key
 * (`MLES_KEY`) or this side's own address (with `MLES_ADDR_KEY`).
 */
export class V1Connection {
  private readonly reader = new V1FrameReader(V1_MAX_PAYLOAD_BYTES)
  private key = ''
  private cid = 0
  private ended = false
  private endedHere = false
  private badFrame: string | undefined

  private constructor (private readonly socket: Socket, private readonly handlers: V1ConnectionHandlers) {
    socket.on('data', (chunk: Buffer) => { this.received(chunk) })
    socket.on('drain', () => { handlers.onDrain?.() })
    let error: Error | undefined
    socket.on('error', (cause: Error) => { error = cause })
    socket.once('close', () => {
      this.ended = true
      handlers.onClose({
        ...(this.badFrame === undefined && error !== undefined ? { error } : {}),
        ...(this.badFrame === undefined ? {} : { badFrame: this.badFrame }),
        local: this.endedHere
      })
    })
  }

  /** Connects; rejects with the socket's error (refused, unreachable) when it cannot. */
  static async open (address: V1ServerAddress, handlers: V1ConnectionHandlers): Promise<V1Connection> {
    const socket = connect({ host: address.host, port: address.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 5000 })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => { socket.off('error', reject); resolve() })
      socket.once('error', reject)
    })
    return new V1Connection(socket, handlers)
  }

  /** This side's endpoint as the key hashes it in address mode (`a.b.c.d:port`, `[h:…:h]:port`). */
  get localAddress (): string {
    return addressString(this.socket.localAddress ?? '', this.socket.localPort ?? 0)
  }

  /** Fixes the key and CID of every frame from now on (SPEC-v1 §5). */
  keyFor (uid: string, channel: string, mode: V1KeyMode): void {
    this.key = v1Key(keyStrings(mode, this.localAddress, uid, channel))
    this.cid = cidOfKey(this.key)
  }

  /**
   * Sends `payload` (a CBOR `Msg`, passed through untouched) behind a prefix
   * with this connection's key; false when the socket's buffer is full (wait
   * for `onDrain`).
   */
  sendPayload (payload: Uint8Array): boolean {
    if (this.ended) return true
    return this.socket.write(encodeFrame(payload, this.cid, this.key))
  }

  /** Sends a `Msg`, encoded as the reference encodes it. */
  sendMsg (msg: V1Msg): boolean {
    return this.sendPayload(encodeMsg(msg))
  }

  /** Stops and resumes reading from the server (the reader cannot keep up). */
  pause (): void {
    this.socket.pause()
  }

  resume (): void {
    this.socket.resume()
  }

  /** Bytes written but not yet sent. */
  get bufferedBytes (): number {
    return this.socket.writableLength
  }

  /** Ends the connection once what was sent is out (the server then ends the session, SPEC-v1 §1). */
  end (): void {
    if (this.ended) return
    this.endedHere = true
    this.socket.end()
  }

  private received (chunk: Buffer): void {
    const frames = this.reader.push(chunk)
    if (!Array.isArray(frames)) {
      this.badFrame = frames
      this.socket.destroy()
      return
    }
    for (const frame of frames) this.handlers.onPayload(frame.subarray(V1_PREFIX_BYTES))
  }
}

/**
 * What a console client shows of a payload (SPEC-v1 §9): the `Msg`, or null
 * for a `ResyncMsg`, a `Msg` with an empty message (joins) and anything that
 * does not decode.
 */
export function displayedMsg (payload: Uint8Array): V1Msg | null {
  if (decodeResync(payload) !== null) return null
  const msg = decodeMsg(payload)
  return msg.message.length === 0 ? null : msg
}
