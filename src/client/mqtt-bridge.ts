import type { MqttClient } from 'mqtt'
import { requirePackage } from '../optional.js'
import { FrameDeduplicator, frameHash } from './dedup.js'
import { TypedEmitter } from './emitter.js'
import { MlesClient, type MlesClientOptions } from './mles-client.js'

export interface MlesMqttBridgeOptions extends Omit<MlesClientOptions, 'dedup'> {
  /** The Mles server. */
  server: string
  /** The MQTT broker, e.g. mqtt://127.0.0.1:1883. */
  broker: string
  /** The MQTT topic; default: the channel name. */
  topic?: string
  /** Frame hashes remembered to stop loops (SPEC §6). Default 40,000. */
  dedup?: number
}

export interface MlesMqttBridgeEvents {
  /** A frame crossed the bridge. */
  forward: { to: 'mqtt' | 'mles', bytes: number }
  error: Error
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** MQTT payloads carry no type: valid UTF-8 goes to Mles as text, anything else as binary. */
function mlesFrameOf (payload: Uint8Array): string | Uint8Array {
  try {
    return utf8.decode(payload)
  } catch {
    return payload
  }
}

/**
 * Bridges an Mles channel and an MQTT topic both ways (Node only, with the
 * `mqtt` package, an optional peer dependency: `npm install mqtt`; `ready`
 * rejects with `MlesMissingPackageError` without it). One deduplicator over the frame bytes stops the echo of the
 * broker and loops through other bridges.
 */
export class MlesMqttBridge extends TypedEmitter<MlesMqttBridgeEvents> {
  readonly mles: MlesClient
  private mqtt: MqttClient | null = null
  readonly forwarded = { toMqtt: 0, toMles: 0 }
  private readonly seen: FrameDeduplicator
  private readonly topic: string
  private closed = false
  /** Settles once both sides are connected and subscribed. */
  readonly ready: Promise<void>

  constructor (private readonly options: MlesMqttBridgeOptions) {
    super()
    const { server, broker, topic, dedup, ...client } = options
    this.topic = topic ?? client.channel
    this.seen = new FrameDeduplicator(dedup ?? 40_000)
    this.mles = new MlesClient(server, { ...client, dedup: 0 })
    this.seen.add(frameHash(this.mles.joinFrame))
    this.seen.add(frameHash(JSON.stringify({ uid: client.uid, channel: client.channel })))
    this.mles.on('message', (message) => { this.toMqtt(message.data) })
    this.mles.on('join', (message) => { this.toMqtt(message.data) })
    this.mles.on('error', (error) => { this.emit('error', error) })
    this.ready = Promise.all([this.mles.ready, this.connectMqtt(broker)]).then(() => {})
  }

  private async connectMqtt (broker: string): Promise<void> {
    await requirePackage('mqtt', 'MlesMqttBridge')
    const { connectAsync } = await import('mqtt')
    const mqtt = await connectAsync(broker, { clientId: `mles-bridge-${this.options.uid}-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 1000 })
    if (this.closed) {
      await mqtt.endAsync()
      return
    }
    this.mqtt = mqtt
    mqtt.on('message', (_topic, payload) => { this.toMles(payload) })
    mqtt.on('error', (error) => { this.emit('error', error) })
    await mqtt.subscribeAsync(this.topic, { qos: 0 })
  }

  private toMqtt (data: string | Uint8Array): void {
    if (!this.seen.add(frameHash(data)) || this.mqtt === null) return
    const payload = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    this.mqtt.publish(this.topic, payload, { qos: 0 })
    this.forwarded.toMqtt++
    this.emit('forward', { to: 'mqtt', bytes: payload.length })
  }

  private toMles (payload: Uint8Array): void {
    if (!this.seen.add(frameHash(payload)) || this.mles.state === 'closed') return
    this.mles.send(mlesFrameOf(payload))
    this.forwarded.toMles++
    this.emit('forward', { to: 'mles', bytes: payload.length })
  }

  async close (): Promise<void> {
    this.closed = true
    await Promise.all([this.mles.close(), this.mqtt?.endAsync()])
  }
}
