import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

async function pair (url: string, app: Parameters<typeof waitForMembers>[0]): Promise<[TestClient, TestClient]> {
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.next() // a's join frame
  return [a, b]
}

test('a frame over maxMessageBytes is dropped and counted; the connection stays', async () => {
  const { app, url } = await startMles({ maxMessageBytes: 1000 })
  const [a, b] = await pair(url, app)
  a.send('x'.repeat(1001))
  a.send(Buffer.alloc(5000))
  a.send('y'.repeat(1000))
  const message = await b.next()
  assert.equal(message.text, 'y'.repeat(1000))
  await b.expectSilence()
  assert.equal(app.mles.metrics().dropped_messages_oversize, 2)
  assert.ok(!app.mles.history('c').some((frame) => frame.data.length > 1000))
  a.send('still connected')
  assert.equal((await b.next()).text, 'still connected')
  a.close()
  b.close()
  await app.close()
})

test('the default maxMessageBytes is 1 MiB', async () => {
  const { app, url } = await startMles()
  const [a, b] = await pair(url, app)
  a.send(Buffer.alloc(1024 * 1024 + 1))
  a.send(Buffer.alloc(1024 * 1024, 1))
  const message = await b.next()
  assert.equal(message.data.length, 1024 * 1024)
  await waitFor(() => app.mles.metrics().dropped_messages_oversize === 1, 'one oversize drop')
  a.close()
  b.close()
  await app.close()
})

test('past messagesPerSecond the excess is dropped and counted', async () => {
  const { app, url } = await startMles({ messagesPerSecond: 10 })
  const [a, b] = await pair(url, app)
  for (let i = 0; i < 25; i++) a.send(`m${i}`)
  assert.deepEqual(await b.texts(10), Array.from({ length: 10 }, (_, i) => `m${i}`))
  await b.expectSilence(200)
  assert.equal(app.mles.metrics().dropped_messages_rate, 15)
  // the next second allows again
  await new Promise((resolve) => setTimeout(resolve, 1000))
  a.send('later')
  assert.equal((await b.next()).text, 'later')
  a.close()
  b.close()
  await app.close()
})

test('messagesPerSecond 0 turns the rate limit off; the default is 100', async () => {
  for (const [options, expected] of [[{ messagesPerSecond: 0 }, 300], [{}, 100]] as const) {
    const { app, url } = await startMles(options)
    const [a, b] = await pair(url, app)
    for (let i = 0; i < 300; i++) a.send(`m${i}`)
    await waitFor(() => app.mles.metrics().total_messages_received === 300, 'all received')
    assert.equal((await b.texts(expected)).length, expected)
    await b.expectSilence(100)
    assert.equal(app.mles.metrics().dropped_messages_rate, 300 - expected)
    a.close()
    b.close()
    await app.close()
  }
})
