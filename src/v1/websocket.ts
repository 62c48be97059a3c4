import type { Socket } from 'node:net'
import type { RawData, WebSocket } from 'ws'
import { PING_FRAME, stillAlive, type KeepAliveTarget } from '../keepalive.js'
import { CloseCode, CloseReason } from '../protocol/close.js'
import { encodeFrame as encodeWebSocketFrame } from '../protocol/frame.js'
import type { RecipientSocket } from '../hub/outbox.js'
import { encodeFrame, V1_MAX_PAYLOAD_BYTES, V1_PREFIX_BYTES } from './frame.js'
import { addressString, cidOfKey, keyStrings, v1Key } from './key.js'
import { V1Member, type V1Carrier, type V1EndReason, type V1MemberContext } from './member.js'
import { decodeMsg } from './msg.js'

/** What a CBOR WebSocket connection needs of the listener that owns it. */
export interface V1WebSocketContext extends V1MemberContext {
  v1WebSocketClosed: (session: V1WebSocketSession) => void
}

/** The subprotocol a CBOR WebSocket client offers (SPEC-v1 §9). */
export const V1_WS_PROTOCOL = 'mles-websocket'

/**
 * Whether a `Sec-WebSocket-Protocol` header offers `mles-websocket` as the
 * reference's proxy checks it: among its comma-separated tokens, split with
 * no trimming, exactly.
 */
export function offersV1Protocol (header: string | undefined): boolean {
  return header !== undefined && header.split(',').includes(V1_WS_PROTOCOL)
}

/** The close code and reason a WebSocket client gets when one of its channels ends. */
const END_CLOSES: Record<V1EndReason, [number, string]> = {
  'bad first frame': [CloseCode.POLICY_VIOLATION, 'invalid Msg: a uid and a channel are needed'],
  'key mismatch': [CloseCode.POLICY_VIOLATION, CloseReason.AUTH_FAILED],
  duplicate: [CloseCode.POLICY_VIOLATION, CloseReason.DUPLICATE],
  'slow consumer': [CloseCode.POLICY_VIOLATION, CloseReason.SLOW_CONSUMER],
  'too many channels': [CloseCode.TRY_AGAIN_LATER, CloseReason.TOO_MANY_CHANNELS],
  'channel rate': [CloseCode.TRY_AGAIN_LATER, CloseReason.CHANNEL_RATE],
  'internal error': [CloseCode.INTERNAL_ERROR, CloseReason.INTERNAL_ERROR],
  closed: [1000, '']
}

/**
 * One WebSocket client speaking v1's CBOR at option `v1.webSocketPath`, as
 * through the reference's proxy (SPEC-v1 §9): each message is a bare CBOR
 * `Msg`, and the server frames it as v1 with the key the proxy would have
 * made — over `[MLES_KEY, uid, channel]`, or the client's own address — so
 * that v1 TCP members get it as from any v1 client. Several channels share
 * the connection, one member each; what a channel's member is sent goes out
 * as a binary message, the v1 prefix stripped. An empty message leaves every
 * channel and closes with 1000; a message that is not a `Msg` closes with
 * 1007; a channel refused (a uid already there) or dropped closes the
 * connection with that reason.
 */
export class V1WebSocketSession implements KeepAliveTarget {
  private readonly channels = new Map<string, WebSocketChannel>()
  private readonly raw: Socket
  private shut = false
  /** Keep-alive state (`stillAlive`). */
  bytesReadAtTick = 0
  missedTicks = 0

  constructor (readonly ws: WebSocket, private readonly context: V1WebSocketContext) {
    this.raw = (ws as unknown as { _socket: Socket })._socket
    ws.on('message', (data: RawData) => { this.message(toBuffer(data)) })
    ws.on('error', (error) => {
      this.context.counters.protocolErrors++
      this.context.log.debug({ err: error }, 'mles v1: WebSocket error')
    })
    ws.on('close', () => { this.closed() })
  }

  get remoteAddress (): string {
    return this.raw.remoteAddress ?? ''
  }

  get remotePort (): number {
    return this.raw.remotePort ?? 0
  }

  isOpen (): boolean {
    return !this.shut && this.ws.readyState === 1
  }

  private message (data: Buffer): void {
    if (this.shut) return
    if (data.length === 0) {
      this.close(1000, '')
      return
    }
    const msg = decodeMsg(data)
    if (msg.channel === '' || msg.uid === '') {
      this.context.counters.rejectedHeaders++
      this.close(1007, 'each message must be a CBOR Msg {uid, channel, message}')
      return
    }
    if (data.length > V1_MAX_PAYLOAD_BYTES) {
      this.context.counters.droppedOversize++
      this.close(CloseCode.MESSAGE_TOO_BIG, 'a v1 Msg is at most 16777215 bytes')
      return
    }
    let channel = this.channels.get(msg.channel)
    if (channel === undefined) {
      const key = v1Key(keyStrings(this.context.keyMode, addressString(this.remoteAddress, this.remotePort), msg.uid, msg.channel))
      channel = new WebSocketChannel(this, key, this.context)
      this.channels.set(msg.channel, channel)
    }
    channel.receive(data)
  }

  /** The connection's TCP (or TLS) socket, which the channels' members write their frames to. */
  get rawSocket (): Socket {
    return this.raw
  }

  /** A channel's member ended: refused or dropped closes the connection with why; closed by the client, nothing more. */
  channelEnded (reason: V1EndReason): void {
    if (this.shut) return
    const [code, text] = END_CLOSES[reason]
    this.close(code, text)
  }

  keepAliveTick (maxMissed: number): void {
    if (!this.isOpen()) return
    if (stillAlive(this, this.raw.bytesRead, maxMissed)) {
      this.raw.write(PING_FRAME)
      return
    }
    this.context.counters.droppedKeepalive++
    this.close(CloseCode.POLICY_VIOLATION, CloseReason.KEEPALIVE_TIMEOUT)
  }

  /** Leaves every channel and closes the connection. */
  close (code: number, reason: string): void {
    if (this.shut) return
    this.shut = true
    for (const channel of this.channels.values()) channel.member.gone()
    this.channels.clear()
    this.ws.close(code, reason)
    // A client that never answers the close must not keep the socket.
    setTimeout(() => { this.ws.terminate() }, 2000).unref()
  }

  private closed (): void {
    this.shut = true
    for (const channel of this.channels.values()) channel.member.gone()
    this.channels.clear()
    this.context.v1WebSocketClosed(this)
  }
}

/** One channel of a CBOR WebSocket connection: a v1 member whose frames go out as WebSocket messages. */
class WebSocketChannel implements V1Carrier {
  readonly member: V1Member
  readonly checksKey = false
  readonly socket: RecipientSocket
  private readonly cid: number

  constructor (private readonly session: V1WebSocketSession, private readonly key: string, context: V1MemberContext) {
    this.cid = cidOfKey(key)
    const raw = session.rawSocket
    // The hub writes whole v1 frames; the client gets each as a binary message, its prefix stripped.
    this.socket = {
      write: (frame: Buffer) => raw.write(encodeWebSocketFrame(frame.subarray(V1_PREFIX_BYTES), true)),
      cork: () => { raw.cork() },
      uncork: () => { raw.uncork() },
      get writableLength () { return raw.writableLength }
    } as RecipientSocket
    this.member = new V1Member(this, context)
  }

  get remoteAddress (): string {
    return this.session.remoteAddress
  }

  get remotePort (): number {
    return this.session.remotePort
  }

  isOpen (): boolean {
    return this.session.isOpen()
  }

  /** A client message (a bare `Msg`), framed as v1 with this channel's key. */
  receive (payload: Buffer): void {
    this.member.receive(encodeFrame(payload, this.cid, this.key))
  }

  entered (): void {}

  end (reason: V1EndReason): void {
    this.session.channelEnded(reason)
  }
}

/** A ws message as one Buffer. */
export function toBuffer (data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}
