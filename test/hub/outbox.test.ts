import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

interface WriteLog { calls: number, chunks: Buffer[] }

/** Counts the writes that reach each server socket's transport (_write, _writev). */
function recordWrites (socket: Socket): WriteLog {
  const log: WriteLog = { calls: 0, chunks: [] }
  const target = socket as unknown as {
    _write: (chunk: Buffer, encoding: string, callback: () => void) => void
    _writev: (chunks: Array<{ chunk: Buffer }>, callback: () => void) => void
  }
  const write = target._write.bind(socket)
  const writev = target._writev.bind(socket)
  target._write = (chunk, encoding, callback) => { log.calls++; log.chunks.push(chunk); write(chunk, encoding, callback) }
  target._writev = (chunks, callback) => { log.calls++; for (const { chunk } of chunks) log.chunks.push(chunk); writev(chunks, callback) }
  return log
}

test('fan-out encodes a frame once and coalesces a turn\'s writes into one writev per socket', async () => {
  const serverSockets: Socket[] = []
  const { app, url } = await startMles({ historyLimit: 0 }, (instance) => {
    instance.server.on('connection', (socket: Socket) => { serverSockets.push(socket) })
  })
  const clients: TestClient[] = []
  for (let i = 0; i < 3; i++) clients.push(await TestClient.join(url, { uid: `u${i}`, channel: 'c' }))
  await waitForMembers(app, 'c', 3)
  const logs = serverSockets.map(recordWrites)

  const count = 100
  for (let i = 0; i < count; i++) app.mles.publish('c', `m${i}`)
  for (const client of clients) assert.equal((await client.texts(count)).at(-1), `m${count - 1}`)

  for (const log of logs) {
    assert.equal(log.chunks.length, count, 'one chunk per frame: header and payload together')
    assert.equal(log.calls, 1, 'one transport write for the whole turn')
  }
  for (let i = 0; i < count; i++) {
    assert.equal(logs[1].chunks[i], logs[0].chunks[i], 'the very same Buffer goes to every recipient')
    assert.equal(logs[2].chunks[i], logs[0].chunks[i])
  }
  for (const client of clients) client.close()
  await app.close()
})

test('frames from a client burst are coalesced too', async () => {
  const serverSockets: Socket[] = []
  const { app, url } = await startMles({ historyLimit: 0, messagesPerSecond: 0 }, (instance) => {
    instance.server.on('connection', (socket: Socket) => { serverSockets.push(socket) })
  })
  const sender = await TestClient.join(url, { uid: 's', channel: 'c' })
  const receiver = await TestClient.join(url, { uid: 'r', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  const receiverLog = recordWrites(serverSockets[1])
  const count = 500
  // one TCP write from the client: many frames arrive in one read on the server
  const frames = Array.from({ length: count }, (_, i) => `f${i}`)
  ;(sender.ws as unknown as { _socket: Socket })._socket.cork()
  for (const frame of frames) sender.send(frame)
  ;(sender.ws as unknown as { _socket: Socket })._socket.uncork()
  assert.deepEqual(await receiver.texts(count), frames)
  assert.ok(receiverLog.calls < count / 10, `${receiverLog.calls} transport writes for ${count} frames`)
  sender.close()
  receiver.close()
  await app.close()
})
