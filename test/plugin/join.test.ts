import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, waitForMembers, waitFor } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

const badHeaders: Array<[string, string | Buffer, number, string]> = [
  ['binary frame', Buffer.from('{"uid":"x","channel":"c"}'), 1003, 'invalid header: binary frame'],
  ['invalid JSON', '{"uid": "x", "channel": ', 1008, 'invalid header: not JSON'],
  ['not an object', '["x", "c"]', 1008, 'invalid header: not a JSON object'],
  ['uid missing', '{"channel":"c"}', 1008, 'invalid header: uid missing'],
  ['uid not a string', '{"uid":7,"channel":"c"}', 1008, 'invalid header: uid must be a string'],
  ['uid empty', '{"uid":"","channel":"c"}', 1008, 'invalid header: uid is empty'],
  ['uid not ASCII', '{"uid":"x\u00e9","channel":"c"}', 1008, 'invalid header: uid must be ASCII'],
  ['channel missing', '{"uid":"x"}', 1008, 'invalid header: channel missing'],
  ['channel not a string', '{"uid":"x","channel":["c"]}', 1008, 'invalid header: channel must be a string'],
  ['channel empty', '{"uid":"x","channel":""}', 1008, 'invalid header: channel is empty'],
  ['channel not ASCII', '{"uid":"x","channel":"\u00e7"}', 1008, 'invalid header: channel must be ASCII'],
  ['auth not a string', '{"uid":"x","channel":"c","auth":123}', 1008, 'invalid header: auth must be a string'],
  ['bad auth', '{"uid":"x","channel":"c","auth":"0123456789abcdef"}', 1008, 'authentication failed']
]


test('bad join frames', async (t) => {
  const { app, url } = await startMles()
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  assert.equal((await b.next()).text, '{"uid":"a","channel":"c"}')

  for (const [name, header, code, reason] of badHeaders) {
    await t.test(name, async () => {
      const errorsBefore = app.mles.metrics().total_errors
      const bad = await TestClient.connect(url)
      bad.send(header)
      assert.deepEqual(await bad.closedWithin(), { code, reason })
      assert.equal(app.mles.metrics().total_errors, errorsBefore + 1)
      // nobody joined, the channel and its members carry on
      assert.equal(app.mles.channels().find((channel) => channel.name === 'c')?.members, 2)
      a.send(`after ${name}`)
      assert.equal((await b.next()).text, `after ${name}`)
    })
  }
  assert.equal(app.mles.metrics().rejected_headers, badHeaders.length - 1)
  assert.equal(app.mles.metrics().rejected_auth, 1)
  assert.equal(a.pending + b.pending, 0)
  await app.close()
})

test('a join frame over maxMessageBytes closes with 1009; one over maxFrameBytes is cut off by ws with 1009', async () => {
  const { app, url } = await startMles({ maxMessageBytes: 1024, maxFrameBytes: 4096 })
  const big = await TestClient.connect(url)
  big.send(JSON.stringify({ uid: 'x', channel: 'c', pad: 'p'.repeat(2000) }))
  assert.deepEqual(await big.closedWithin(), { code: 1009, reason: 'invalid header: too large' })
  const huge = await TestClient.connect(url)
  huge.send(JSON.stringify({ uid: 'x', channel: 'c', pad: 'p'.repeat(5000) }))
  assert.equal((await huge.closedWithin()).code, 1009)
  assert.equal(app.mles.metrics().total_errors, 2)
  await app.close()
})

test('the default join frame limit is 1 MiB', async () => {
  const { app, url } = await startMles()
  const ok = await TestClient.join(url, { uid: 'x', channel: 'c', pad: 'p'.repeat(1024 * 1024 - 100) })
  await waitForMembers(app, 'c', 1)
  const big = await TestClient.connect(url)
  big.send(JSON.stringify({ uid: 'y', channel: 'c', pad: 'p'.repeat(1024 * 1024) }))
  assert.equal((await big.closedWithin()).code, 1009)
  ok.close()
  await app.close()
})

test('invalid UTF-8 in a text join frame closes with 1007 and is counted', async () => {
  const { app, url } = await startMles()
  const bad = await TestClient.connect(url)
  // ws validates UTF-8 on the client side too, so put the raw frame on the socket.
  const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d])
  const masked = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload])
  ;(bad.ws as unknown as { _socket: import('node:net').Socket })._socket.write(masked)
  assert.equal((await bad.closedWithin()).code, 1007)
  await waitFor(() => app.mles.metrics().total_errors === 1, 'the error to be counted')
  await app.close()
})

test('no join frame within joinTimeoutMs closes with 1008 "join timeout"', async () => {
  const { app, url } = await startMles({ joinTimeoutMs: 150 })
  const started = Date.now()
  const idle = await TestClient.connect(url)
  assert.deepEqual(await idle.closedWithin(), { code: 1008, reason: 'join timeout' })
  assert.ok(Date.now() - started >= 140)
  assert.equal(app.mles.metrics().dropped_join_timeout, 1)
  assert.equal(app.mles.metrics().total_dropped_connections, 1)
  // a client that joins in time is not affected
  const joined = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.equal(app.mles.channels()[0].members, 1)
  joined.close()
  await app.close()
})

test('the default join timeout is 30 s', async () => {
  const { app, url } = await startMles()
  const idle = await TestClient.connect(url)
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.equal(app.mles.metrics().active_connections, 1)
  idle.close()
  await app.close()
})

test('a duplicate (uid, channel) is refused while the first is connected; the first keeps working', async () => {
  const { app, url } = await startMles()
  const first = await TestClient.join(url, { uid: 'alice', channel: 'c' })
  const other = await TestClient.join(url, { uid: 'bob', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  const duplicate = await TestClient.join(url, { uid: 'alice', channel: 'c' })
  assert.deepEqual(await duplicate.closedWithin(), { code: 1008, reason: 'uid already joined on this channel' })
  assert.equal(app.mles.metrics().rejected_duplicates, 1)
  first.send('still here')
  assert.equal((await other.next()).text, '{"uid":"alice","channel":"c"}')
  assert.equal((await other.next()).text, 'still here')
  // the same uid on another channel is a different member
  const elsewhere = await TestClient.join(url, { uid: 'alice', channel: 'd' })
  await waitForMembers(app, 'd', 1)
  elsewhere.close()
  first.close()
  other.close()
  await app.close()
})

test('after leaving, the same uid may join again at once', async () => {
  const { app, url } = await startMles()
  for (let round = 0; round < 5; round++) {
    const client = await TestClient.join(url, { uid: 'alice', channel: 'c' })
    await waitForMembers(app, 'c', 1)
    client.close()
    await client.closed
  }
  const again = await TestClient.join(url, { uid: 'alice', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  assert.equal(app.mles.metrics().rejected_duplicates, 0)
  again.close()
  await app.close()
})
