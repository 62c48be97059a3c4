// Anchor for the Redis path: socket.io 4 rooms as in socket.io.ts, joined to
// the other processes of a deployment through @socket.io/redis-adapter (the
// adapter people pick for this), on the Redis at MLES_BENCH_REDIS_URL.
import { createServer } from 'node:http'
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { Server } from 'socket.io'
import { serve } from './common.js'

const url = process.env.MLES_BENCH_REDIS_URL
if (url === undefined) throw new Error('socket.io-redis: set MLES_BENCH_REDIS_URL')
const publisher = new Redis(url)
const subscriber = publisher.duplicate()

const server = createServer()
const io = new Server(server, { serveClient: false, transports: ['websocket'], maxHttpBufferSize: 2 * 1024 * 1024, adapter: createAdapter(publisher, subscriber) })
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
