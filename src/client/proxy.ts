import { FrameDeduplicator, frameHash } from './dedup.js'
import { TypedEmitter } from './emitter.js'
import { MlesClient, type MlesClientOptions, type MlesMessage } from './mles-client.js'

export interface MlesProxyOptions extends Omit<MlesClientOptions, 'resync' | 'dedup'> {
  /** The servers to link: every frame seen on one is published on all the others. At least two. */
  servers: string[]
  /** Frame hashes remembered to stop loops and duplicates (SPEC §6). Default 40,000. */
  dedup?: number
}

export interface MlesProxyEvents {
  /** A frame seen on server `from` was published on server `to`. */
  forward: { from: number, to: number, message: MlesMessage }
  /** State of the link to one server. */
  link: { server: number, state: MlesClient['state'] }
  error: { server: number, error: Error }
}

/**
 * Links one channel across several Mles servers (SPEC §6): joins it on each,
 * and publishes every frame seen on one server on all the others. One shared
 * deduplicator means a frame is forwarded once however many paths bring it
 * back, so any number of proxies, even in a ring, never loop. Each link
 * reconnects and resyncs, so a restarted server gets the channel back.
 */
export class MlesProxy extends TypedEmitter<MlesProxyEvents> {
  readonly clients: MlesClient[]
  /** `forwarded[from][to]`: frames published on server `to` that were seen on server `from`. */
  readonly forwarded: number[][]
  private readonly seen: FrameDeduplicator
  /** Settles once every link has been open once. */
  readonly ready: Promise<void>

  constructor (options: MlesProxyOptions) {
    super()
    const { servers, dedup, ...client } = options
    if (!Array.isArray(servers) || servers.length < 2) throw new TypeError('MlesProxy: give at least two servers')
    this.seen = new FrameDeduplicator(dedup ?? 40_000)
    // This proxy's own join frames come back in replays: never forward them.
    this.seen.add(frameHash(JSON.stringify({ uid: client.uid, channel: client.channel })))
    this.forwarded = servers.map(() => servers.map(() => 0))
    this.clients = servers.map((url, index) => {
      const link = new MlesClient(url, { ...client, dedup: 0, resync: true })
      link.on('message', (message) => { this.relay(index, message) })
      link.on('join', (message) => { this.relay(index, message) })
      link.on('state', (state) => { this.emit('link', { server: index, state }) })
      link.on('error', (error) => { this.emit('error', { server: index, error }) })
      return link
    })
    for (const link of this.clients) {
      // The proxy's own join frame as the client sends it (with auth) must not be forwarded either.
      this.seen.add(frameHash(link.joinFrame))
    }
    this.ready = Promise.all(this.clients.map(async (link) => { await link.ready })).then(() => {})
  }

  private relay (from: number, message: MlesMessage): void {
    if (!this.seen.add(frameHash(message.data))) return
    for (let to = 0; to < this.clients.length; to++) {
      if (to === from || this.clients[to].state === 'closed') continue
      this.clients[to].send(message.data)
      this.forwarded[from][to]++
      this.emit('forward', { from, to, message })
    }
  }

  async close (): Promise<void> {
    await Promise.all(this.clients.map(async (link) => { await link.close() }))
  }
}
