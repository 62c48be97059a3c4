import type { Socket } from 'node:net'

/**
 * Bytes all connections together may read in one turn of the event loop;
 * past it, a connection that reads pauses and waits its turn. libuv reads a
 * readable socket up to 32 times (2 MiB) per turn, so 50 clients sending
 * 1 MiB frames at full speed made a turn ~100 MB of work and held a fresh
 * client's join for 300 ms and more. One busy publisher alone still reads
 * this much a turn, so its frames go out in large batches as before.
 */
const TURN_BYTES = 1024 * 1024
/** Paused connections resumed per turn, oldest first: about one turn's worth of reads (64 KiB each). */
const RESUMED_PER_TURN = TURN_BYTES / (64 * 1024)

let readInTurn = 0
let turnEnding = false
/** Paused connections in the order they paused; `next` is the first still waiting. */
let waiting: Socket[] = []
let next = 0

function scheduleTurnEnd (): void {
  if (turnEnding) return
  turnEnding = true
  setImmediate(endTurn)
}

function endTurn (): void {
  readInTurn = 0
  turnEnding = false
  const until = Math.min(waiting.length, next + RESUMED_PER_TURN)
  for (; next < until; next++) {
    const socket = waiting[next]
    if (!socket.destroyed) socket.resume()
  }
  if (next === waiting.length) {
    waiting = []
    next = 0
  } else {
    scheduleTurnEnd()
  }
}

function onData (this: Socket, chunk: Buffer): void {
  readInTurn += chunk.length
  scheduleTurnEnd()
  if (readInTurn < TURN_BYTES) return
  this.pause()
  waiting.push(this)
}

/**
 * Makes `socket` share each event-loop turn's reading with the others: past
 * `TURN_BYTES` read by all in the turn it pauses after its read, and paused
 * connections resume a few per turn, in the order they paused: a fresh
 * client's upgrade and join wait a few turns at most.
 */
export function readFairly (socket: Socket): void {
  socket.on('data', onData)
}
