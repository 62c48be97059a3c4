// Baseline: the Node ceiling for Mles fan-out on raw ws — each frame encoded once,
// written to every recipient's socket, sockets corked per event-loop turn; history
// kept pre-framed and replayed corked. No limits, no slow-consumer protection.
// With MLES_BENCH_TLS_CERT and MLES_BENCH_TLS_KEY (W6), the same over https.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { serve } from './common.js'

interface Member { socket: Socket, corked: boolean }
interface Channel { members: Set<Member>, history: Buffer[] }
const HISTORY_LIMIT = 200
const channels = new Map<string, Channel>()
const corked: Member[] = []
let flushScheduled = false
function flush (): void {
  flushScheduled = false
  for (const member of corked) { member.corked = false; member.socket.uncork() }
  corked.length = 0
}
function write (member: Member, frame: Buffer): void {
  if (!member.corked) {
    member.corked = true
    member.socket.cork()
    corked.push(member)
    if (!flushScheduled) { flushScheduled = true; setImmediate(flush) }
  }
  member.socket.write(frame)
}
function frameOf (data: Buffer, binary: boolean): Buffer {
  const size = data.length
  const header = size < 126 ? 2 : size < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(header + size)
  frame[0] = binary ? 0x82 : 0x81
  if (header === 2) frame[1] = size
  else if (header === 4) { frame[1] = 126; frame.writeUInt16BE(size, 2) } else { frame[1] = 127; frame.writeUInt32BE(0, 2); frame.writeUInt32BE(size, 6) }
  data.copy(frame, header)
  return frame
}

const certFile = process.env.MLES_BENCH_TLS_CERT
const keyFile = process.env.MLES_BENCH_TLS_KEY
const server = certFile !== undefined && keyFile !== undefined
  ? createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) })
  : createServer()
const wss = new WebSocketServer({ server, perMessageDeflate: false, handleProtocols: (offered) => offered.has('mles-websocket') ? 'mles-websocket' : false })
wss.on('connection', (ws: WebSocket) => {
  const member: Member = { socket: (ws as unknown as { _socket: Socket })._socket, corked: false }
  let channel: Channel | null = null
  ws.on('message', (raw, binary) => {
    const data = raw as Buffer
    if (channel === null) {
      const header = JSON.parse(data.toString()) as { channel: string }
      let joined = channels.get(header.channel)
      if (joined === undefined) {
        joined = { members: new Set(), history: [] }
        channels.set(header.channel, joined)
      }
      for (const frame of joined.history) write(member, frame)
      joined.history.push(frameOf(data, false))
      if (joined.history.length > HISTORY_LIMIT) joined.history.shift()
      joined.members.add(member)
      channel = joined
      return
    }
    const frame = frameOf(data, binary)
    for (const other of channel.members) if (other !== member) write(other, frame)
    channel.history.push(frame)
    if (channel.history.length > HISTORY_LIMIT) channel.history.shift()
  })
  ws.on('close', () => { channel?.members.delete(member) })
  ws.on('error', () => {})
})
server.listen(0, '127.0.0.1', () => { serve((server.address() as { port: number }).port) })
