import cbor from 'cbor'
import WebSocket from 'ws'

/** A message as a CBOR WebSocket client of the v1 proxy sees it. */
export interface CborReceived {
  uid: string
  channel: string
  message: Buffer
  /** `message` as UTF-8. */
  text: string
  /** The WebSocket message as it came. */
  raw: Buffer
}

/**
 * A WebSocket client of Mles v1 written on the `cbor` package, as a browser
 * page of the reference would be: each message a bare CBOR `Msg` map
 * {uid, channel, message}, binary both ways.
 */
export class CborWsClient {
  private readonly queue: CborReceived[] = []
  private waiters: Array<(message: CborReceived) => void> = []
  readonly closed: Promise<{ code: number, reason: string }>

  private constructor (readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const decoded = cbor.decodeFirstSync(data) as { uid: string, channel: string, message: Buffer }
      const message = Buffer.from(decoded.message)
      const received = { uid: decoded.uid, channel: decoded.channel, message, text: message.toString('utf8'), raw: Buffer.from(data) }
      const waiter = this.waiters.shift()
      if (waiter !== undefined) waiter(received)
      else this.queue.push(received)
    })
    ws.on('error', () => {})
    this.closed = new Promise((resolve) => { ws.once('close', (code, reason) => { resolve({ code, reason: reason.toString() }) }) })
  }

  /** Opens `url` offering `protocols` (default `mles-websocket`); rejects with the server's HTTP status when refused. */
  static async open (url: string, protocols: string | string[] = 'mles-websocket'): Promise<CborWsClient> {
    const ws = new WebSocket(url, protocols)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => { resolve() })
      ws.once('unexpected-response', (_request, response) => { reject(new Error(`HTTP ${response.statusCode ?? '?'}`)) })
      ws.once('error', reject)
    })
    return new CborWsClient(ws)
  }

  /** The CBOR of a Msg, as `cbor` encodes a map in insertion order (the reference's field order). */
  static encode (uid: string, channel: string, message: string | Uint8Array): Buffer {
    return cbor.encode(new Map<string, unknown>([['uid', uid], ['channel', channel], ['message', typeof message === 'string' ? Buffer.from(message) : Buffer.from(message)]]))
  }

  send (uid: string, channel: string, message: string | Uint8Array): void {
    this.ws.send(CborWsClient.encode(uid, channel, message))
  }

  sendRaw (data: Buffer | string): void {
    this.ws.send(data)
  }

  async next (timeoutMs = 3000): Promise<CborReceived> {
    const queued = this.queue.shift()
    if (queued !== undefined) return queued
    return await new Promise<CborReceived>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== deliver)
        reject(new Error(`no message within ${timeoutMs} ms`))
      }, timeoutMs)
      const deliver = (message: CborReceived): void => {
        clearTimeout(timer)
        resolve(message)
      }
      this.waiters.push(deliver)
    })
  }

  /** Messages that came and were not taken yet. */
  get pending (): number {
    return this.queue.length
  }

  close (): void {
    this.ws.close()
  }
}
