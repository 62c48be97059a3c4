// The socket.io server both socket.io baselines run: rooms, websocket transport only, binary events.
import { createServer } from 'node:http'
import { Server, type ServerOptions } from 'socket.io'
import { serve } from './common.js'

export function serveSocketIoRooms (options: Partial<ServerOptions> = {}): void {
  const server = createServer()
  const io = new Server(server, { serveClient: false, transports: ['websocket'], maxHttpBufferSize: 2 * 1024 * 1024, ...options })
  io.on('connection', (socket) => {
    let room = ''
    socket.on('join', (name: string, ack?: () => void) => {
      room = name
      void socket.join(name)
      ack?.()
    })
    socket.on('msg', (data: Buffer) => { socket.to(room).emit('msg', data) })
  })
  server.listen(0, '127.0.0.1', () => { serve((server.address() as { port: number }).port) })
}
