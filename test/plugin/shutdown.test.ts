import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Socket } from 'node:net'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

test('app.close() closes every member and every waiting connection with 1001', async () => {
  const { app, url } = await startMles()
  const members = [await TestClient.join(url, { uid: 'a', channel: 'c' }), await TestClient.join(url, { uid: 'b', channel: 'd' })]
  const waiting = await TestClient.connect(url)
  await waitForMembers(app, 'c', 1)
  await waitForMembers(app, 'd', 1)
  await app.close()
  for (const client of [...members, waiting]) {
    assert.deepEqual(await client.closedWithin(), { code: 1001, reason: 'server shutting down' })
  }
})

test('app.mles.close() alone refuses new upgrades with 503', async () => {
  const { app, url } = await startMles()
  const member = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  await app.mles.close()
  assert.equal((await member.closedWithin()).code, 1001)
  assert.equal((await refusedUpgrade(url)).status, 503)
  await app.close()
})

test('a client that never answers the closing handshake is cut off after a grace period', async () => {
  const { app, url } = await startMles()
  const stuck = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  ;(stuck.ws as unknown as { _socket: Socket })._socket.pause()
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  assert.ok(took >= 1500 && took < 5000, `closed in ${took} ms`)
  ;(stuck.ws as unknown as { _socket: Socket })._socket.resume()
  await stuck.closedWithin()
})

test('after app.close() no timer or socket keeps the process alive', async () => {
  const fixture = fileURLToPath(new URL('../fixtures/close-and-exit.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(null) }, 10_000)
    child.on('exit', (exitCode) => { clearTimeout(timer); resolve(exitCode) })
  })
  assert.equal(code, 0, `the process exited by itself (output: ${output})`)
  assert.match(output, /closed 1001/)
})
