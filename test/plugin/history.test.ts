import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('a joiner gets the history oldest first, join frames included; current members do not get join frames', async () => {
  const { app, url } = await startMles()
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  a.send('one')
  a.send(Buffer.from([1, 2, 3]))
  await waitFor(() => app.mles.history('c').length === 3, 'three frames in history')
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  const replay = [await b.next(), await b.next(), await b.next()]
  assert.deepEqual(replay.map((message) => [message.isBinary, message.text]), [
    [false, '{"uid":"a","channel":"c"}'],
    [false, 'one'],
    [true, '\x01\x02\x03']
  ])
  await waitForMembers(app, 'c', 2)
  await a.expectSilence() // b's join frame is not sent to a
  const stored = app.mles.history('c')
  assert.equal(stored.length, 4)
  assert.deepEqual(JSON.parse(stored[3].data.toString()), { uid: 'b', channel: 'c' })
  a.close()
  b.close()
  await app.close()
})

test('history outlives its members, and is bounded by historyLimit', async () => {
  const { app, url } = await startMles({ historyLimit: 5 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  for (let i = 0; i < 10; i++) a.send(`m${i}`)
  await waitFor(() => app.mles.history('c').at(-1)?.data.toString() === 'm9', 'm9 stored')
  a.close()
  await waitForMembers(app, 'c', 0)
  assert.deepEqual(app.mles.channels(), [{ name: 'c', members: 0, historySize: 5, historyBytes: 20 }])
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  assert.deepEqual(await b.texts(5), ['m5', 'm6', 'm7', 'm8', 'm9'])
  await b.expectSilence()
  b.close()
  await app.close()
})

test('history is bounded by historyMaxBytes, oldest first', async () => {
  const { app, url } = await startMles({ historyMaxBytes: 3000 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  for (let i = 0; i < 10; i++) a.send(`${i}`.repeat(1000))
  await waitFor(() => app.mles.history('c').at(-1)?.data.toString().startsWith('9') === true, 'last frame stored')
  const kept = app.mles.history('c')
  assert.equal(kept.length, 2, 'two 1000-byte frames (with headers) fit in 3000 bytes')
  assert.deepEqual(kept.map((frame) => frame.data.toString()[0]), ['8', '9'])
  a.close()
  await app.close()
})

test('an idle channel with no members is forgotten after channelIdleMs', async () => {
  const { app, url } = await startMles({ channelIdleMs: 300 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  a.send('remember me')
  await waitFor(() => app.mles.history('c').length === 2, 'stored')
  // a member keeps the channel however long it is quiet
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.equal(app.mles.history('c').length, 2)
  a.close()
  await waitForMembers(app, 'c', 0)
  const emptiedAt = Date.now()
  await waitFor(() => app.mles.channels().length === 0, 'the channel to be forgotten', 2000)
  assert.ok(Date.now() - emptiedAt >= 250, 'not before channelIdleMs')
  assert.deepEqual(app.mles.history('c'), [])
  assert.equal(app.mles.metrics().total_channels, 0)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  await b.expectSilence()
  b.close()
  await app.close()
})

test('historyLimit 0 keeps nothing and a channel is dropped as soon as it empties', async () => {
  const { app, url } = await startMles({ historyLimit: 0 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  a.send('x')
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.expectSilence()
  a.close()
  b.close()
  await waitFor(() => app.mles.channels().length === 0, 'channel dropped')
  await app.close()
})
