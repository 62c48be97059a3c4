import WebSocket, { type ClientOptions as WsClientOptions } from 'ws'

/** ws options plus the TLS ones ws passes through to tls.connect. */
export type ClientOptions = WsClientOptions & { servername?: string }

export interface Received {
  data: Buffer
  isBinary: boolean
  text: string
}

export interface Closed {
  code: number
  reason: string
}

export interface RefusedUpgrade {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A WebSocket client for tests: queued messages, awaitable close, refused-upgrade details. */
export class TestClient {
  private readonly queue: Received[] = []
  private waiters: Array<(message: Received) => void> = []
  readonly closed: Promise<Closed>

  private constructor (readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const buffer = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[])
      const message = { data: buffer, isBinary, text: buffer.toString('utf8') }
      const waiter = this.waiters.shift()
      if (waiter !== undefined) waiter(message)
      else this.queue.push(message)
    })
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }) })
    })
    ws.on('error', () => {})
  }

  /** Opens a connection offering `protocols` (default `mles-websocket`); rejects when the upgrade is refused. */
  static async connect (url: string, protocols: string | string[] | null = 'mles-websocket', options: ClientOptions = {}): Promise<TestClient> {
    const ws = protocols === null ? new WebSocket(url, options) : new WebSocket(url, protocols, options)
    const client = new TestClient(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => { resolve() })
      ws.once('unexpected-response', (_request, response) => {
        let body = ''
        response.on('data', (chunk: Buffer) => { body += chunk.toString() })
        response.on('end', () => {
          reject(Object.assign(new Error(`upgrade refused with ${response.statusCode ?? 0}`), {
            refused: { status: response.statusCode ?? 0, headers: response.headers, body } satisfies RefusedUpgrade
          }))
        })
      })
      ws.once('error', reject)
    })
    return client
  }

  /** Connects and sends a join frame (an object is sent as JSON text). */
  static async join (url: string, header: object | string, options: ClientOptions = {}): Promise<TestClient> {
    const client = await TestClient.connect(url, 'mles-websocket', options)
    client.send(typeof header === 'string' ? header : JSON.stringify(header))
    return client
  }

  send (data: string | Buffer, binary?: boolean): void {
    this.ws.send(data, { binary: binary ?? typeof data !== 'string' })
  }

  /** The next message, failing after `timeoutMs`. */
  async next (timeoutMs = 3000): Promise<Received> {
    const queued = this.queue.shift()
    if (queued !== undefined) return queued
    return await new Promise<Received>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== deliver)
        reject(new Error(`no message within ${timeoutMs} ms`))
      }, timeoutMs)
      const deliver = (message: Received): void => { clearTimeout(timer); resolve(message) }
      this.waiters.push(deliver)
    })
  }

  /** The next `count` messages as text. */
  async texts (count: number, timeoutMs = 3000): Promise<string[]> {
    const texts: string[] = []
    for (let i = 0; i < count; i++) texts.push((await this.next(timeoutMs)).text)
    return texts
  }

  /** Fails if any message arrives within `ms`. */
  async expectSilence (ms = 150): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms))
    if (this.queue.length > 0) throw new Error(`unexpected message: ${this.queue[0].text.slice(0, 100)}`)
  }

  get pending (): number {
    return this.queue.length
  }

  /** Waits for the close, failing after `timeoutMs`. */
  async closedWithin (timeoutMs = 3000): Promise<Closed> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`not closed within ${timeoutMs} ms`)) }, timeoutMs)
    })
    try {
      return await Promise.race([this.closed, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  close (): void {
    this.ws.close()
  }
}

/** Attempts an upgrade expected to be refused; returns the HTTP answer. */
export async function refusedUpgrade (url: string, protocols: string | string[] | null = 'mles-websocket', options: ClientOptions = {}): Promise<RefusedUpgrade> {
  try {
    const client = await TestClient.connect(url, protocols, options)
    client.close()
  } catch (error) {
    const refused = (error as { refused?: RefusedUpgrade }).refused
    if (refused !== undefined) return refused
    throw error
  }
  throw new Error('the upgrade was accepted')
}
