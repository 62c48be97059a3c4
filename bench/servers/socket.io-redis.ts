// Anchor for the Redis path: the socket.io baseline joined to the other
// processes of a deployment through @socket.io/redis-adapter (the adapter
// people pick for this), on the Redis at MLES_BENCH_REDIS_URL.
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { serveSocketIoRooms } from './socket-io-rooms.js'

const url = process.env.MLES_BENCH_REDIS_URL
if (url === undefined) throw new Error('socket.io-redis: set MLES_BENCH_REDIS_URL')
const publisher = new Redis(url)
serveSocketIoRooms({ adapter: createAdapter(publisher, publisher.duplicate()) })
