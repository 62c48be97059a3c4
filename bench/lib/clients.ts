import { RawWebSocket } from './raw-ws.js'

/** The systems the benchmark compares. */
export const SYSTEMS = ['fastify-mles', 'ws-basic', 'ws-ceiling', 'socket.io', 'mosquitto', 'nats', 'mles-redis', 'mles-workers2', 'socket.io-redis'] as const
/** The `mles` command joined through Redis: one worker, and two sharing the port (`--cluster`, W2 only). */
export const CLUSTER_SYSTEMS: ReadonlySet<SystemName> = new Set<SystemName>(['mles-redis', 'mles-workers2', 'socket.io-redis'])
export type SystemName = typeof SYSTEMS[number]

export interface BenchHandlers {
  /** A data message; its payload is `data[start, end)`, valid only during the call. */
  onMessage: (data: Buffer, start: number, end: number) => void
  /** Any other frame delivered to a member (Mles join frames replayed from history). */
  onOther?: () => void
}

export interface BenchClient {
  /** Publishes `payload` to the channel this client joined; it reaches the other members. */
  publish: (payload: Buffer) => void
  /** Stops reading from the socket (a consumer that never reads). */
  pause: () => void
  close: () => void
}

/** Connects and joins `channel`; resolves once joined as far as the protocol lets a client know. */
export type Connector = (port: number, uid: string, channel: string, handlers: BenchHandlers) => Promise<BenchClient>

const TEXT = 1
const BINARY = 2

/** Mles v2: the plugin and the two raw ws baselines speak it. */
const connectMles: Connector = async (port, uid, channel, handlers) => {
  const ws = await RawWebSocket.open(port, '/', 'mles-websocket', (opcode, data, start, end) => {
    if (opcode === BINARY) handlers.onMessage(data, start, end)
    else handlers.onOther?.()
  })
  ws.send(TEXT, JSON.stringify({ uid, channel }))
  return { publish: (payload) => { ws.send(BINARY, payload) }, pause: () => { ws.pause() }, close: () => { ws.close() } }
}

/** socket.io 4 (engine.io 4) over its websocket transport; a room per channel; binary events. */
const connectSocketIo: Connector = async (port, _uid, channel, handlers) => {
  let joined: () => void = () => {}
  const ready = new Promise<void>((resolve) => { joined = resolve })
  const ws = await RawWebSocket.open(port, '/socket.io/?EIO=4&transport=websocket', null, (opcode, data, start, end) => {
    if (opcode === BINARY) {
      handlers.onMessage(data, start, end)
      return
    }
    const first = data[start]
    if (first === 0x32 && end - start === 1) ws.send(TEXT, '3') // engine.io ping → pong
    else if (first === 0x30) ws.send(TEXT, '40') // engine.io open → socket.io connect
    else if (data.toString('latin1', start, start + 2) === '40') ws.send(TEXT, `420["join",${JSON.stringify(channel)}]`)
    else if (data.toString('latin1', start, start + 3) === '430') joined()
  })
  await ready
  const placeholder = '451-["msg",{"_placeholder":true,"num":0}]'
  return {
    publish: (payload) => { ws.send(TEXT, placeholder); ws.send(BINARY, payload) },
    pause: () => { ws.pause() },
    close: () => { ws.close() }
  }
}

function varint (value: number): number[] {
  const bytes: number[] = []
  do {
    let byte = value % 128
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    bytes.push(byte)
  } while (value > 0)
  return bytes
}

function mqttString (text: string): Buffer {
  const bytes = Buffer.from(text)
  const out = Buffer.allocUnsafe(2 + bytes.length)
  out.writeUInt16BE(bytes.length, 0)
  bytes.copy(out, 2)
  return out
}

function mqttPacket (type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, ...varint(body.length)]), body])
}

/**
 * Reassembles a byte stream carried in WebSocket frames (MQTT, NATS): `parse`
 * consumes whole messages from `data[at, end)` and returns where it stopped;
 * the rest waits for the next frame.
 */
function streamParser (parse: (data: Buffer, at: number, end: number) => number): (data: Buffer, from: number, to: number) => void {
  let pending: Buffer | null = null
  return (data, from, to) => {
    let buffer = data
    let at = from
    let end = to
    if (pending !== null) {
      buffer = Buffer.concat([pending, data.subarray(from, to)])
      pending = null
      at = 0
      end = buffer.length
    }
    const stopped = parse(buffer, at, end)
    if (stopped < end) pending = Buffer.from(buffer.subarray(stopped, end))
  }
}

/**
 * MQTT 5 over WebSocket (Mosquitto): a topic per channel, QoS 0, subscribed
 * with No Local so a publisher does not get its own messages back, as in Mles.
 */
const connectMqtt: Connector = async (port, uid, channel, handlers) => {
  let subscribed: () => void = () => {}
  const ready = new Promise<void>((resolve) => { subscribed = resolve })
  const parse = streamParser((buffer, at, end) => {
    while (end - at >= 2) {
      const type = buffer[at] >> 4
      let remaining = 0
      let multiplier = 1
      let cursor = at + 1
      let complete = false
      while (cursor < end) {
        const byte = buffer[cursor++]
        remaining += (byte & 0x7f) * multiplier
        multiplier *= 128
        if ((byte & 0x80) === 0) { complete = true; break }
      }
      if (!complete || cursor + remaining > end) break
      const packetEnd = cursor + remaining
      if (type === 3) {
        const qos = (buffer[at] >> 1) & 3
        let position = cursor + 2 + buffer.readUInt16BE(cursor)
        if (qos > 0) position += 2
        let propertiesLength = 0
        let shift = 1
        for (;;) {
          const byte = buffer[position++]
          propertiesLength += (byte & 0x7f) * shift
          shift *= 128
          if ((byte & 0x80) === 0) break
        }
        handlers.onMessage(buffer, position + propertiesLength, packetEnd)
      } else if (type === 9) {
        subscribed()
      }
      at = packetEnd
    }
    return at
  })
  const ws = await RawWebSocket.open(port, '/mqtt', 'mqtt', (_opcode, data, start, end) => { parse(data, start, end) })
  const connect = Buffer.concat([mqttString('MQTT'), Buffer.from([5, 0x02, 0, 0, 0]), mqttString(uid)])
  ws.send(BINARY, mqttPacket(0x10, connect))
  const subscribe = Buffer.concat([Buffer.from([0, 1, 0]), mqttString(channel), Buffer.from([0x04])])
  ws.send(BINARY, mqttPacket(0x82, subscribe))
  await ready
  const topic = mqttString(channel)
  return {
    publish: (payload) => {
      const body = Buffer.allocUnsafe(topic.length + 1 + payload.length)
      topic.copy(body, 0)
      body[topic.length] = 0 // no properties
      payload.copy(body, topic.length + 1)
      ws.send(BINARY, mqttPacket(0x30, body))
    },
    pause: () => { ws.pause() },
    close: () => { ws.close() }
  }
}

/** NATS over WebSocket: a subject per channel, echo off so a publisher does not get its own messages. */
const connectNats: Connector = async (port, _uid, channel, handlers) => {
  let subscribed: () => void = () => {}
  const ready = new Promise<void>((resolve) => { subscribed = resolve })
  let ws: RawWebSocket | null = null
  const parse = streamParser((buffer, at, end) => {
    while (at < end) {
      const lineEnd = buffer.indexOf(0x0a, at)
      if (lineEnd === -1 || lineEnd >= end) break
      if (buffer[at] === 0x4d) { // MSG <subject> <sid> [reply-to] <#bytes>
        let sizeStart = lineEnd - 2
        while (buffer[sizeStart] !== 0x20) sizeStart--
        const size = Number(buffer.toString('latin1', sizeStart + 1, lineEnd - 1))
        const payloadStart = lineEnd + 1
        if (payloadStart + size + 2 > end) break
        handlers.onMessage(buffer, payloadStart, payloadStart + size)
        at = payloadStart + size + 2
        continue
      }
      const word = buffer.toString('latin1', at, Math.min(at + 4, lineEnd))
      if (word === 'PING') ws?.send(BINARY, 'PONG\r\n')
      else if (word === 'PONG') subscribed()
      else if (word === '-ERR') process.stderr.write(`nats: ${buffer.toString('latin1', at, lineEnd)}\n`)
      at = lineEnd + 1
    }
    return at
  })
  ws = await RawWebSocket.open(port, '/', null, (_opcode, data, start, end) => { parse(data, start, end) })
  ws.send(BINARY, `CONNECT {"verbose":false,"pedantic":false,"echo":false,"protocol":1}\r\nSUB ${channel} 1\r\nPING\r\n`)
  await ready
  const socket = ws
  return {
    publish: (payload) => {
      const head = Buffer.from(`PUB ${channel} ${payload.length}\r\n`)
      socket.send(BINARY, Buffer.concat([head, payload, Buffer.from('\r\n')]))
    },
    pause: () => { socket.pause() },
    close: () => { socket.close() }
  }
}

export const CONNECTORS: Record<SystemName, Connector> = {
  'fastify-mles': connectMles,
  'mles-redis': connectMles,
  'mles-workers2': connectMles,
  'ws-basic': connectMles,
  'ws-ceiling': connectMles,
  'socket.io': connectSocketIo,
  'socket.io-redis': connectSocketIo,
  mosquitto: connectMqtt,
  nats: connectNats
}

/** Systems that keep a channel history replayed to joiners (W4). */
export const HAS_HISTORY: ReadonlySet<SystemName> = new Set(['fastify-mles', 'ws-basic', 'ws-ceiling', 'mles-redis', 'mles-workers2'])
