// Baseline: the obvious Mles server on raw ws — ws.send per recipient, history replayed with ws.send.
import { createServer } from 'node:http'
import { WebSocketServer, type WebSocket } from 'ws'
import { serve } from './common.js'

interface Channel { members: Set<WebSocket>, history: Array<{ data: Buffer, binary: boolean }> }
const HISTORY_LIMIT = 200
const channels = new Map<string, Channel>()
const server = createServer()
const wss = new WebSocketServer({ server, perMessageDeflate: false, handleProtocols: (offered) => offered.has('mles-websocket') ? 'mles-websocket' : false })

wss.on('connection', (ws) => {
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
      for (const frame of joined.history) ws.send(frame.data, { binary: frame.binary })
      joined.history.push({ data, binary: false })
      if (joined.history.length > HISTORY_LIMIT) joined.history.shift()
      joined.members.add(ws)
      channel = joined
      return
    }
    for (const member of channel.members) if (member !== ws) member.send(data, { binary })
    channel.history.push({ data, binary })
    if (channel.history.length > HISTORY_LIMIT) channel.history.shift()
  })
  ws.on('close', () => { channel?.members.delete(ws) })
  ws.on('error', () => {})
})
server.listen(0, '127.0.0.1', () => { serve((server.address() as { port: number }).port) })
