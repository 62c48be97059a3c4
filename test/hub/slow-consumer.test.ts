import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

const rawSocket = (client: TestClient): Socket => (client.ws as unknown as { _socket: Socket })._socket

test('a client that stops reading is dropped at maxBufferedBytes; the others get every frame', async () => {
  const maxBufferedBytes = 256 * 1024
  const frameSize = 16 * 1024
  const frames = 2000 // 32 MiB in all, far more than the kernel's socket buffers
  const serverSockets: Socket[] = []
  const { app, url } = await startMles({ maxBufferedBytes, maxMessageBytes: 64 * 1024, messagesPerSecond: 0, historyLimit: 10 }, (instance) => {
    instance.server.on('connection', (socket: Socket) => { serverSockets.push(socket) })
  })
  const publisher = await TestClient.join(url, { uid: 'pub', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const readers: TestClient[] = []
  for (let i = 0; i < 5; i++) {
    readers.push(await TestClient.join(url, { uid: `r${i}`, channel: 'c' }))
    await waitForMembers(app, 'c', 2 + i)
  }
  const slow = await TestClient.join(url, { uid: 'slow', channel: 'c' })
  await waitForMembers(app, 'c', 7)
  const slowPort = rawSocket(slow).localPort
  const slowServerSocket = serverSockets.find((socket) => socket.remotePort === slowPort)
  assert.ok(slowServerSocket !== undefined)
  rawSocket(slow).pause() // stop reading: the kernel buffers fill, then the server's

  const window = 8
  let peakQueued = 0
  const sampler = setInterval(() => {
    for (const socket of serverSockets) peakQueued = Math.max(peakQueued, socket.writableLength)
  }, 1)

  const counts = readers.map(() => 0)
  const inOrder = readers.map(() => true)
  readers.forEach((reader, index) => {
    reader.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return // join frames of the replay
      if (data.readUInt32BE(0) !== counts[index]) inOrder[index] = false
      counts[index]++
    })
  })
  // The readers share this process with the server, so the publisher keeps a
  // window of frames in flight instead of outrunning them.
  const payload = Buffer.alloc(frameSize)
  for (let i = 0; i < frames; i++) {
    if (i >= window) await waitFor(() => Math.min(...counts) > i - window, `readers to reach frame ${i - window}`, 10_000)
    payload.writeUInt32BE(i, 0)
    publisher.send(Buffer.from(payload))
  }
  await waitFor(() => counts.every((count) => count === frames), 'every reader to get every frame', 10_000)
  clearInterval(sampler)

  assert.ok(inOrder.every(Boolean), 'frames arrive in order')
  assert.equal(app.mles.metrics().dropped_slow_consumers, 1)
  assert.equal(app.mles.metrics().total_dropped_connections, 1)
  assert.equal(app.mles.channels()[0].members, 6, 'the slow one left the channel at once')
  // The bound: maxBufferedBytes from earlier turns, plus what one turn adds (at most the window in flight).
  const bound = maxBufferedBytes + window * (frameSize + 4) + 1024 // + control frames
  assert.ok(peakQueued <= bound, `peak queued ${peakQueued} bytes, bound ${bound}`)
  assert.ok(slowServerSocket.writableLength <= bound)

  // When it reads again it finds the close code after what was queued before the drop.
  // (its own replay came first; the test's message listeners were not on it)
  rawSocket(slow).resume()
  assert.deepEqual(await slow.closedWithin(5000), { code: 1008, reason: 'slow consumer' })
  // and it can join again with the same uid
  const back = await TestClient.join(url, { uid: 'slow', channel: 'c' })
  await waitForMembers(app, 'c', 7)
  for (const client of [publisher, ...readers, back]) client.close()
  await app.close()
})
