import type { Socket } from 'node:net'

/**
 * Bytes a connection may read before it lets the others have a turn: one
 * read of Node's (64 KiB). libuv reads a readable socket up to 32 times per
 * event-loop turn, so 50 clients sending 1 MiB frames at full speed made each
 * turn ~100 MB of work and held a fresh client's join for 300 ms and more;
 * one read each, it is a few MB and the join takes a few tens of ms.
 */
const READ_TURN_BYTES = 64 * 1024

const kReadInTurn = Symbol('mles.readInTurn')

interface FairSocket extends Socket {
  [kReadInTurn]: number
}

function onData (this: FairSocket, chunk: Buffer): void {
  const read = this[kReadInTurn] + chunk.length
  if (read < READ_TURN_BYTES) {
    this[kReadInTurn] = read
    return
  }
  this[kReadInTurn] = 0
  this.pause()
  setImmediate(resume, this)
}

function resume (socket: Socket): void {
  if (!socket.destroyed) socket.resume()
}

/**
 * Makes `socket` yield to the other connections after each
 * `READ_TURN_BYTES` it reads: it pauses, and resumes on the next turn of the
 * event loop. Costs nothing to a client sending less.
 */
export function readFairly (socket: Socket): void {
  (socket as FairSocket)[kReadInTurn] = 0
  socket.on('data', onData)
}
