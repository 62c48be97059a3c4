import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('a frame reaches every other member, never the sender, and type and bytes are kept', async () => {
  const { app, url } = await startMles()
  const uids = ['a', 'b', 'c', 'd']
  const clients: TestClient[] = []
  for (const uid of uids) {
    clients.push(await TestClient.join(url, { uid, channel: 'room' }))
    await waitForMembers(app, 'room', clients.length)
  }
  // each got the join frames of those before it
  for (let i = 0; i < clients.length; i++) {
    assert.deepEqual((await clients[i].texts(i)).map((text) => JSON.parse(text).uid), uids.slice(0, i))
  }

  const binary = randomBytes(70_000)
  const text = 'héllo wörld ✓'
  clients[0].send(text)
  clients[1].send(binary)
  clients[2].send(Buffer.alloc(0))
  clients[3].send('')
  for (let i = 0; i < clients.length; i++) {
    const expected: Array<[Buffer, boolean]> = []
    if (i !== 0) expected.push([Buffer.from(text), false])
    if (i !== 1) expected.push([binary, true])
    if (i !== 2) expected.push([Buffer.alloc(0), true])
    if (i !== 3) expected.push([Buffer.alloc(0), false])
    // Frames of different senders may come in any order (a large one is read in turns); each arrives once, as sent.
    const received = []
    for (let n = 0; n < expected.length; n++) received.push(await clients[i].next())
    for (const [data, isBinary] of expected) {
      const index = received.findIndex((message) => message.isBinary === isBinary && message.data.equals(data))
      assert.ok(index !== -1, `client ${i}: a ${isBinary ? 'binary' : 'text'} frame of ${data.length} bytes`)
      received.splice(index, 1)
    }
  }
  for (const client of clients) await client.expectSilence(100)
  assert.equal(app.mles.metrics().total_messages_received, 4)
  for (const client of clients) client.close()
  await app.close()
})

test('channels are independent', async () => {
  const { app, url } = await startMles()
  const join = async (uid: string, channel: string, before: number): Promise<TestClient> => {
    const client = await TestClient.join(url, { uid, channel })
    await waitForMembers(app, channel, before + 1)
    return client
  }
  const a1 = await join('x', 'one', 0)
  const a2 = await join('y', 'one', 1)
  const b1 = await join('x', 'two', 0)
  const b2 = await join('y', 'two', 1)
  assert.equal(JSON.parse((await a2.next()).text).channel, 'one')
  assert.equal(JSON.parse((await b2.next()).text).channel, 'two')
  a1.send('to one')
  b1.send('to two')
  assert.equal((await a2.next()).text, 'to one')
  assert.equal((await b2.next()).text, 'to two')
  await a2.expectSilence()
  await b2.expectSilence()
  assert.deepEqual(app.mles.history('one').map((frame) => frame.data.toString()).slice(-1), ['to one'])
  assert.deepEqual(app.mles.history('two').map((frame) => frame.data.toString()).slice(-1), ['to two'])
  for (const client of [a1, a2, b1, b2]) client.close()
  await app.close()
})

test('order from one publisher is kept under a burst, for every recipient', async () => {
  const { app, url } = await startMles({ messagesPerSecond: 0, historyLimit: 0 })
  const publisher = await TestClient.join(url, { uid: 'p', channel: 'burst' })
  const receivers: TestClient[] = []
  for (let i = 0; i < 20; i++) receivers.push(await TestClient.join(url, { uid: `r${i}`, channel: 'burst' }))
  await waitForMembers(app, 'burst', 21)
  const count = 2000
  for (let i = 0; i < count; i++) publisher.send(`m${i}`)
  for (const receiver of receivers) {
    const texts = await receiver.texts(count, 10_000)
    assert.deepEqual(texts, Array.from({ length: count }, (_, i) => `m${i}`))
  }
  assert.equal(app.mles.metrics().total_messages_sent, count * 20)
  for (const client of [publisher, ...receivers]) client.close()
  await app.close()
})
