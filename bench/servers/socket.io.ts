// Baseline: socket.io 4 rooms, websocket transport only, binary events.
import { serveSocketIoRooms } from './socket-io-rooms.js'

serveSocketIoRooms()
