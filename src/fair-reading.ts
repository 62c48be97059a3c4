import type { Socket } from 'node:net'

/**
 * Bytes all connections together may read in one turn of the event loop
 * before each connection that reads more yields until the next turn. libuv
 * reads a readable socket up to 32 times (2 MiB) per turn, so 50 clients
 * sending 1 MiB frames at full speed made a turn ~100 MB of work and held a
 * fresh client's join for 300 ms and more; bounded, a turn is a few MB. One
 * busy publisher alone still reads 1 MiB a turn, so its frames go out in
 * large batches as before.
 */
const TURN_BYTES = 1024 * 1024

let readInTurn = 0
let turnEnding = false

function endTurn (): void {
  readInTurn = 0
  turnEnding = false
}

function onData (this: Socket, chunk: Buffer): void {
  readInTurn += chunk.length
  if (!turnEnding) {
    turnEnding = true
    setImmediate(endTurn)
  }
  if (readInTurn < TURN_BYTES) return
  this.pause()
  setImmediate(resume, this)
}

function resume (socket: Socket): void {
  if (!socket.destroyed) socket.resume()
}

/**
 * Makes `socket` share the reading of each event-loop turn with the others:
 * past `TURN_BYTES` read by all in the turn, it pauses after its read and
 * resumes on the next turn.
 */
export function readFairly (socket: Socket): void {
  socket.on('data', onData)
}
