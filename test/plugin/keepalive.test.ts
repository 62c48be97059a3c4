import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, sleep, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('clients are pinged every pingIntervalMs; one that answers stays', async () => {
  const { app, url } = await startMles({ pingIntervalMs: 50, maxMissedPongs: 2 })
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  let pings = 0
  client.ws.on('ping', () => { pings++ })
  await sleep(400)
  assert.ok(pings >= 5, `${pings} pings`)
  assert.equal(app.mles.channels()[0].members, 1)
  assert.equal(app.mles.metrics().dropped_keepalive, 0)
  client.close()
  await app.close()
})

test('a client leaving maxMissedPongs pings unanswered is closed with 1008 "keep-alive timeout"', async () => {
  const { app, url } = await startMles({ pingIntervalMs: 50, maxMissedPongs: 3 })
  const healthy = await TestClient.join(url, { uid: 'ok', channel: 'c' })
  const silent = await TestClient.connect(url, 'mles-websocket', { autoPong: false })
  let pings = 0
  silent.ws.on('ping', () => { pings++ })
  silent.send(JSON.stringify({ uid: 'silent', channel: 'c' }))
  await waitForMembers(app, 'c', 2)
  const started = Date.now()
  assert.deepEqual(await silent.closedWithin(2000), { code: 1008, reason: 'keep-alive timeout' })
  // exactly 3 unanswered pings after the join frame (which counts as alive); one more may have come before it
  assert.ok(pings === 3 || pings === 4, `closed after ${pings} pings`)
  assert.ok(Date.now() - started >= 100)
  assert.equal(app.mles.metrics().dropped_keepalive, 1)
  assert.equal(app.mles.channels()[0].members, 1)
  healthy.close()
  await app.close()
})

test('any frame from the client counts as alive', async () => {
  const { app, url } = await startMles({ pingIntervalMs: 50, maxMissedPongs: 2 })
  const talker = await TestClient.connect(url, 'mles-websocket', { autoPong: false })
  talker.send(JSON.stringify({ uid: 't', channel: 'c' }))
  const timer = setInterval(() => { talker.send('still here') }, 20)
  await sleep(400)
  clearInterval(timer)
  assert.equal(app.mles.metrics().dropped_keepalive, 0)
  assert.equal(app.mles.channels()[0].members, 1)
  talker.close()
  await app.close()
})

test('pingIntervalMs 0 turns keep-alive off', async () => {
  const { app, url } = await startMles({ pingIntervalMs: 0 })
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  let pings = 0
  client.ws.on('ping', () => { pings++ })
  await sleep(200)
  assert.equal(pings, 0)
  client.close()
  await app.close()
})
