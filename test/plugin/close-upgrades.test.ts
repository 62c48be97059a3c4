import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

function rawUpgrade (port: number): { socket: Socket, answer: Promise<string> } {
  const socket = connect(port, '127.0.0.1')
  socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mles-websocket\r\n\r\n')
  let text = ''
  const answer = new Promise<string>((resolve) => {
    // The whole answer: the server ends the socket after it.
    socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
    socket.on('close', () => { resolve(text) })
  })
  socket.on('error', () => {})
  return { socket, answer }
}

test('an upgrade arriving while app.close() runs is refused and its socket closed, so the close never waits for it', async () => {
  const { app, url, port } = await startMles()
  // A member that never answers the closing handshake keeps the shutdown in its grace period.
  const stuck = await TestClient.join(url, { uid: 'stuck', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  ;(stuck.ws as unknown as { _socket: Socket })._socket.pause()
  const started = Date.now()
  const closing = app.close()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const late = rawUpgrade(port)
  const answer = await Promise.race([late.answer, new Promise<string>((_resolve, reject) => setTimeout(() => { reject(new Error('the late upgrade socket stayed open')) }, 3000))])
  assert.match(answer, /^HTTP\/1\.1 503 /, 'refused as the server is shutting down')
  assert.match(answer, /connection: close/i)
  assert.deepEqual(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { statusCode: 503, error: 'Service Unavailable', message: 'the server is shutting down' })
  await Promise.race([closing, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('app.close() did not finish')) }, 6000))])
  assert.ok(Date.now() - started < 6000)
  late.socket.destroy()
})
