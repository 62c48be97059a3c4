import { computeAuth } from '../protocol/siphash.js'
import { MLES_PROTOCOL } from '../protocol/subprotocol.js'
import { FrameDeduplicator, frameHash } from './dedup.js'
import { TypedEmitter } from './emitter.js'

/** A frame delivered to the application. */
export interface MlesMessage {
  /** `join` for a join frame replayed from the history (someone's `{uid, channel}`), `data` otherwise. */
  kind: 'data' | 'join'
  /** Text frames as a string, binary frames as bytes. */
  data: string | Uint8Array
  binary: boolean
  /** The sender's uid where the frame tells it: a join frame's uid, or a `uid` field of a JSON text frame. */
  uid?: string
}

export interface ReconnectOptions {
  /** First delay. Default 500 ms. */
  minDelayMs?: number
  /** Longest delay. Default 30 s. */
  maxDelayMs?: number
  /** Growth per attempt. Default 2. */
  factor?: number
  /** Give up after this many attempts in a row; default never. */
  maxAttempts?: number
}

/**
 * The subset of the WebSocket API the client uses: browsers' global one and
 * `ws` both fit. The handlers' parameters are `never` so that any
 * implementation's own event types are accepted; the client reads only
 * `data`, `code`, `reason`, `message` and `error` from them.
 */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  readonly protocol: string
  onopen: ((event: never) => void) | null
  onmessage: ((event: never) => void) | null
  onclose: ((event: never) => void) | null
  onerror: ((event: never) => void) | null
  send: (data: string | Uint8Array) => void
  close: (code?: number, reason?: string) => void
}
/** A WebSocket constructor, called as `new WebSocket(url, 'mles-websocket', wsOptions)`. */
export type WebSocketFactory = new (url: string, protocols: string | string[], options?: never) => WebSocketLike

/** The socket as the client's handlers see it. */
interface ClientSocket {
  binaryType: string
  readonly readyState: number
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number, reason: string }) => void) | null
  onerror: ((event: { message?: string, error?: unknown }) => void) | null
  send: (data: string | Uint8Array) => void
  close: (code?: number, reason?: string) => void
}
type ClientSocketFactory = new (url: string, protocols: string, options?: Record<string, unknown>) => ClientSocket

export interface MlesClientOptions {
  uid: string
  channel: string
  /** The server's shared key (its MLES_KEY): the join frame then carries `auth` (SPEC §3). */
  key?: string
  /** Send `auth` even without a key (a keyless server then checks it). */
  authWithoutKey?: boolean
  /** How many frame hashes to remember for deduplication (SPEC §6); 0 turns it off. Default 40,000. */
  dedup?: number
  /** Reconnect after an unexpected close, with exponential backoff and jitter. Default on. */
  reconnect?: boolean | ReconnectOptions
  /** After reconnecting, publish again the frames this client saw or sent that the server's replay lacks (SPEC §5). Default off. */
  resync?: boolean
  /** Frames kept for resync. Default 200 (the reference history limit). */
  resyncLimit?: number
  /** The replay is taken as complete after this long without a frame. Default 500 ms. */
  resyncQuietMs?: number
  /**
   * A connection attempt not open within this long is given up (close 1006
   * "connection timed out") and, with `reconnect`, tried again: a server that
   * takes the TCP connection but never answers the upgrade (overloaded, or
   * shutting down) cannot hold the client forever. Default 10 000 ms; 0 = none.
   */
  connectTimeoutMs?: number
  /** WebSocket implementation; default: `ws` in Node, the global one in browsers. */
  WebSocket?: WebSocketFactory
  /** Node only: options for `ws`, e.g. `{ ca }` or `{ rejectUnauthorized: false }`. */
  wsOptions?: Record<string, unknown>
}

export type MlesClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface MlesClientEvents {
  /** The socket is open and the join frame sent. */
  open: { reconnect: boolean }
  message: MlesMessage
  join: MlesMessage
  close: { code: number, reason: string, willReconnect: boolean }
  reconnecting: { attempt: number, delayMs: number }
  /** Frames published again after a reconnect. */
  resync: { resent: number }
  error: Error
  state: MlesClientState
}

/** Close codes after which reconnecting cannot help: the server refused this join for good. */
/** Refusals that a retry cannot change: a bad header or key, or the server's `authorize` saying no (a timeout may pass). */
const PERMANENT_REASONS = new Set(['authentication failed', 'forbidden', 'uid not allowed'])

function isPermanentRefusal (code: number, reason: string): boolean {
  return code === 1003 || code === 1009 || (code === 1008 && (PERMANENT_REASONS.has(reason) || reason.startsWith('invalid header')))
}

const DEFAULT_DEDUP = 40_000
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
const MAX_QUEUED = 10_000
const textDecoder = new TextDecoder()

interface LoggedFrame { data: string | Uint8Array, hash: string }

async function defaultWebSocket (): Promise<WebSocketFactory> {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string'
  const global = (globalThis as { WebSocket?: WebSocketFactory }).WebSocket
  if (!isNode && global !== undefined) return global
  // In Node use `ws` (TLS options, no dependency on the runtime's WebSocket); the name is hidden from bundlers.
  const wsModule = 'ws'
  const imported = await import(wsModule) as { default: WebSocketFactory }
  return imported.default
}

/**
 * An Mles v2 client for Node and browsers: joins a channel, sends text or
 * binary frames, delivers the others' frames as events and as an async
 * iterator, drops duplicates, reconnects, and can resynchronise a server that
 * lost its history.
 */
export class MlesClient extends TypedEmitter<MlesClientEvents> {
  readonly uid: string
  readonly channel: string
  /** The first frame this client sends on every connection. */
  readonly joinFrame: string
  private readonly dedup: FrameDeduplicator | null
  private readonly reconnect: Required<ReconnectOptions> | null
  private readonly resyncLog: LoggedFrame[] | null
  private readonly resyncLimit: number
  private readonly resyncQuietMs: number
  private socket: ClientSocket | null = null
  private currentState: MlesClientState = 'connecting'
  private attempts = 0
  private everOpened = false
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private replay: { hashes: Set<string>, timer: ReturnType<typeof setTimeout> | null } | null = null
  private readonly queued: Array<string | Uint8Array> = []
  private readonly iterators = new Set<{ push: (message: MlesMessage | null) => void }>()
  private factory: WebSocketFactory | undefined
  private settleReady: (error?: Error) => void = () => {}
  /**
   * Settles once a connection is open and the join frame sent (the server may
   * still refuse the join: watch `close`); rejects if the client gives up first.
   */
  readonly ready: Promise<void>

  constructor (readonly url: string, private readonly options: MlesClientOptions) {
    super()
    const { uid, channel } = options
    if (typeof uid !== 'string' || uid.length === 0 || typeof channel !== 'string' || channel.length === 0) {
      throw new TypeError('MlesClient: uid and channel must be non-empty strings')
    }
    this.uid = uid
    this.channel = channel
    this.joinFrame = options.key !== undefined || options.authWithoutKey === true
      ? JSON.stringify({ uid, channel, auth: computeAuth(uid, channel, options.key) })
      : JSON.stringify({ uid, channel })
    const capacity = options.dedup ?? DEFAULT_DEDUP
    this.dedup = capacity > 0 ? new FrameDeduplicator(capacity) : null
    const reconnect = options.reconnect ?? true
    this.reconnect = reconnect === false
      ? null
      : { minDelayMs: 500, maxDelayMs: 30_000, factor: 2, maxAttempts: Infinity, ...(reconnect === true ? {} : reconnect) }
    this.resyncLimit = options.resyncLimit ?? 200
    this.resyncLog = options.resync === true ? [] : null
    this.resyncQuietMs = options.resyncQuietMs ?? 500
    this.factory = options.WebSocket
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (error) => { error === undefined ? resolve() : reject(error) }
    })
    this.ready.catch(() => {})
    // Our own join frames come back in a replay after a reconnect: never deliver them.
    this.dedup?.add(frameHash(JSON.stringify({ uid, channel })))
    this.dedup?.add(frameHash(this.joinFrame))
    void this.connect()
  }

  get state (): MlesClientState {
    return this.currentState
  }

  /** Bytes handed to the socket but not yet sent. */
  get bufferedAmount (): number {
    return (this.socket as { bufferedAmount?: number } | null)?.bufferedAmount ?? 0
  }

  private setState (state: MlesClientState): void {
    if (this.currentState === state) return
    this.currentState = state
    this.emit('state', state)
  }

  private async connect (): Promise<void> {
    try {
      this.factory ??= await defaultWebSocket()
    } catch (error) {
      this.emit('error', error as Error)
      this.finish(1006, 'no WebSocket implementation')
      return
    }
    if (this.currentState === 'closed') return
    const socket = new (this.factory as unknown as ClientSocketFactory)(this.url, MLES_PROTOCOL, this.options.wsOptions)
    socket.binaryType = 'arraybuffer'
    this.socket = socket
    const reconnecting = this.everOpened
    const timeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
    const connectTimer = timeoutMs > 0
      ? setTimeout(() => {
        if (this.socket !== socket) return
        // Closed here, so its own close event (whenever it comes) finds it replaced and is ignored.
        this.closed(socket, 1006, 'connection timed out')
        try { socket.close() } catch {}
      }, timeoutMs)
      : null
    socket.onopen = () => {
      if (connectTimer !== null) clearTimeout(connectTimer)
      socket.send(this.joinFrame)
      this.everOpened = true
      this.attempts = 0
      this.setState('open')
      this.settleReady()
      if (reconnecting && this.resyncLog !== null) this.startReplayWindow()
      for (const frame of this.queued.splice(0)) socket.send(frame)
      this.emit('open', { reconnect: reconnecting })
    }
    socket.onmessage = (event) => { this.receive(event.data) }
    socket.onerror = (event) => {
      const error = event.error instanceof Error ? event.error : new Error(event.message ?? 'WebSocket error')
      if (this.listenerCount('error') > 0) this.emit('error', error)
    }
    socket.onclose = (event) => {
      if (connectTimer !== null) clearTimeout(connectTimer)
      this.closed(socket, event.code, event.reason)
    }
  }

  private receive (raw: unknown): void {
    const binary = typeof raw !== 'string'
    const data: string | Uint8Array = binary ? toBytes(raw) : raw as string
    const hash = this.dedup !== null || this.replay !== null ? frameHash(data) : ''
    if (this.replay !== null) this.noteReplay(hash)
    if (this.dedup !== null && !this.dedup.add(hash)) return
    const message = this.classify(data, binary)
    if (message.kind === 'data') this.logForResync(data, hash)
    this.emit(message.kind === 'join' ? 'join' : 'message', message)
    for (const iterator of this.iterators) iterator.push(message)
  }

  private classify (data: string | Uint8Array, binary: boolean): MlesMessage {
    if (binary || typeof data !== 'string' || !data.startsWith('{')) return { kind: 'data', data, binary }
    try {
      const parsed = JSON.parse(data) as { uid?: unknown, channel?: unknown }
      if (typeof parsed.uid !== 'string') return { kind: 'data', data, binary }
      return { kind: parsed.channel === this.channel ? 'join' : 'data', data, binary, uid: parsed.uid }
    } catch {
      return { kind: 'data', data, binary }
    }
  }

  /** Publishes a frame to the other members: a string as text, bytes as binary. Queued while reconnecting. */
  send (data: string | Uint8Array): void {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw new TypeError('MlesClient: send a string or a Uint8Array')
    if (this.currentState === 'closed') throw new Error('MlesClient: closed')
    if (this.dedup !== null || this.resyncLog !== null) {
      const hash = frameHash(data)
      this.dedup?.add(hash)
      this.logForResync(data, hash)
    }
    if (this.socket !== null && this.currentState === 'open') {
      this.socket.send(data)
    } else {
      if (this.queued.length >= MAX_QUEUED) throw new Error('MlesClient: too many frames queued while disconnected')
      this.queued.push(data)
    }
  }

  private logForResync (data: string | Uint8Array, hash: string): void {
    const log = this.resyncLog
    if (log === null) return
    log.push({ data, hash })
    if (log.length > this.resyncLimit) log.shift()
  }

  private startReplayWindow (): void {
    this.replay = { hashes: new Set(), timer: null }
    this.noteReplay(null)
  }

  /** Each replayed frame restarts the quiet timer; when it fires, the replay is taken as complete. */
  private noteReplay (hash: string | null): void {
    const replay = this.replay
    if (replay === null) return
    if (hash !== null) replay.hashes.add(hash)
    if (replay.timer !== null) clearTimeout(replay.timer)
    replay.timer = setTimeout(() => { this.resync() }, this.resyncQuietMs)
  }

  private resync (): void {
    const replay = this.replay
    this.replay = null
    if (replay === null || this.resyncLog === null || this.socket === null || this.currentState !== 'open') return
    let resent = 0
    for (const frame of this.resyncLog) {
      if (replay.hashes.has(frame.hash)) continue
      this.socket.send(frame.data)
      resent++
    }
    this.emit('resync', { resent })
  }

  private closed (socket: ClientSocket, code: number, reason: string): void {
    if (socket !== this.socket) return
    this.socket = null
    if (this.replay?.timer != null) clearTimeout(this.replay.timer)
    this.replay = null
    const reconnect = this.reconnect
    const willReconnect = this.currentState !== 'closed' && reconnect !== null && !isPermanentRefusal(code, reason) &&
      this.attempts < reconnect.maxAttempts
    this.emit('close', { code, reason, willReconnect })
    // A 'close' listener may have called close(): that ends it.
    if (this.currentState === 'closed') return
    if (!willReconnect || reconnect === null) {
      this.finish(code, reason)
      return
    }
    const delayMs = Math.round(Math.min(reconnect.maxDelayMs, reconnect.minDelayMs * reconnect.factor ** this.attempts) * (0.5 + Math.random() / 2))
    this.attempts++
    this.setState('reconnecting')
    this.emit('reconnecting', { attempt: this.attempts, delayMs })
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      void this.connect()
    }, delayMs)
  }

  private finish (code: number, reason: string): void {
    if (this.currentState === 'closed') return
    this.setState('closed')
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.settleReady(new Error(`MlesClient: closed before joining (${code}${reason === '' ? '' : ` ${reason}`})`))
    for (const iterator of this.iterators) iterator.push(null)
    this.iterators.clear()
  }

  /** Closes for good (code 1000): no reconnect, iterators end. Resolves once the socket has closed. */
  async close (): Promise<void> {
    if (this.currentState === 'closed') return
    const socket = this.socket
    this.finish(1000, 'closed by client')
    this.socket = null
    if (socket === null || socket.readyState === 3) return
    await new Promise<void>((resolve) => {
      socket.onclose = () => { resolve() }
      socket.close(1000)
    })
  }

  /** Every later message and join frame, in order, until the client closes. */
  messages (): AsyncIterableIterator<MlesMessage> {
    const buffered: MlesMessage[] = []
    let waiting: ((result: IteratorResult<MlesMessage>) => void) | null = null
    let done = this.currentState === 'closed'
    const sink = {
      push: (message: MlesMessage | null) => {
        if (message === null) {
          done = true
          if (waiting !== null) { waiting({ value: undefined, done: true }); waiting = null }
          return
        }
        if (waiting !== null) { waiting({ value: message, done: false }); waiting = null } else buffered.push(message)
      }
    }
    if (!done) this.iterators.add(sink)
    const iterator: AsyncIterableIterator<MlesMessage> = {
      next: async () => {
        const message = buffered.shift()
        if (message !== undefined) return { value: message, done: false }
        if (done) return { value: undefined, done: true }
        return await new Promise((resolve) => { waiting = resolve })
      },
      return: async () => {
        done = true
        this.iterators.delete(sink)
        return { value: undefined, done: true }
      },
      [Symbol.asyncIterator] () { return iterator }
    }
    return iterator
  }

  [Symbol.asyncIterator] (): AsyncIterableIterator<MlesMessage> {
    return this.messages()
  }
}

function toBytes (raw: unknown): Uint8Array {
  if (raw instanceof Uint8Array) return raw
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw)
  if (Array.isArray(raw)) {
    const parts = raw as Uint8Array[]
    const total = parts.reduce((sum, part) => sum + part.length, 0)
    const bytes = new Uint8Array(total)
    let offset = 0
    for (const part of parts) { bytes.set(part, offset); offset += part.length }
    return bytes
  }
  return new Uint8Array(0)
}

/** Text of a frame, binary decoded as UTF-8 (for display). */
export function frameText (message: MlesMessage): string {
  return typeof message.data === 'string' ? message.data : textDecoder.decode(message.data)
}
