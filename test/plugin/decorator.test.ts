import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MlesFrame } from '../../src/index.js'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('publish: a server frame reaches every member and is stored; text or binary by type or option', async () => {
  const { app, url } = await startMles()
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  app.mles.publish('c', 'hello from the server')
  app.mles.publish('c', Buffer.from([0, 1, 2]))
  app.mles.publish('c', new Uint8Array([9]))
  app.mles.publish('c', Buffer.from('{"as":"text"}'), { binary: false })
  app.mles.publish('c', 'as binary', { binary: true })
  const got = [await a.next(), await a.next(), await a.next(), await a.next(), await a.next()]
  assert.deepEqual(got.map((m) => [m.isBinary, m.data.toString('hex')]), [
    [false, Buffer.from('hello from the server').toString('hex')],
    [true, '000102'],
    [true, '09'],
    [false, Buffer.from('{"as":"text"}').toString('hex')],
    [true, Buffer.from('as binary').toString('hex')]
  ])
  // stored: a later joiner sees them after a's join frame
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  assert.deepEqual((await b.texts(6)).slice(1, 2), ['hello from the server'])
  // publishing to a channel nobody is on creates it with that history
  app.mles.publish('empty', 'first')
  assert.deepEqual(app.mles.history('empty'), [{ data: Buffer.from('first'), isBinary: false }])
  a.close()
  b.close()
  await app.close()
})

test('publish refuses bad arguments with clear errors', async () => {
  const { app } = await startMles({ maxMessageBytes: 10 })
  assert.throws(() => { app.mles.publish('', 'x') }, /channel must be a non-empty ASCII string/)
  assert.throws(() => { app.mles.publish('ä', 'x') }, /channel must be a non-empty ASCII string/)
  assert.throws(() => { app.mles.publish(42 as unknown as string, 'x') }, TypeError)
  assert.throws(() => { app.mles.publish('c', 42 as unknown as string) }, /data must be a string or a Uint8Array/)
  assert.throws(() => { app.mles.publish('c', 'x'.repeat(11)) }, /11 bytes is over maxMessageBytes \(10\)/)
  assert.throws(() => { app.mles.subscribe('c', 'nope' as unknown as () => void) }, /listener must be a function/)
  await app.close()
  assert.throws(() => { app.mles.publish('c', 'x') }, /after close/)
})

test('subscribe sees every frame of the channel with its sender\'s uid; unsubscribe stops it', async () => {
  const { app, url } = await startMles()
  const seen: MlesFrame[] = []
  const unsubscribe = app.mles.subscribe('c', (frame) => { seen.push(frame) })
  const a = await TestClient.join(url, { uid: 'alice', channel: 'c', auth: undefined })
  await waitForMembers(app, 'c', 1)
  a.send('from alice')
  a.send(Buffer.from([7]))
  await waitFor(() => seen.length === 3, 'three frames')
  app.mles.publish('c', 'from server')
  const other = await TestClient.join(url, { uid: 'x', channel: 'other' })
  await waitForMembers(app, 'other', 1)
  other.send('elsewhere')
  await waitFor(() => app.mles.history('other').length === 2, 'other channel frame stored')
  assert.deepEqual(seen.map((f) => [f.channel, f.uid, f.join, f.isBinary, f.data.toString('hex')]), [
    ['c', 'alice', true, false, Buffer.from('{"uid":"alice","channel":"c"}').toString('hex')],
    ['c', 'alice', false, false, Buffer.from('from alice').toString('hex')],
    ['c', 'alice', false, true, '07'],
    ['c', null, false, false, Buffer.from('from server').toString('hex')]
  ])
  unsubscribe()
  unsubscribe() // idempotent
  a.send('unseen')
  await waitFor(() => app.mles.history('c').length === 5, 'stored')
  assert.equal(seen.length, 4)
  a.close()
  other.close()
  await app.close()
})

test('a throwing listener disturbs neither fan-out nor other listeners', async () => {
  const { app, url } = await startMles()
  const good: string[] = []
  app.mles.subscribe('c', () => { throw new Error('listener bug') })
  app.mles.subscribe('c', (frame) => { good.push(frame.data.toString()) })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.next()
  a.send('still delivered')
  assert.equal((await b.next()).text, 'still delivered')
  await waitFor(() => good.includes('still delivered'), 'the good listener')
  a.close()
  b.close()
  await app.close()
})

test('an async listener that rejects is caught like a throwing one: no unhandled rejection', async () => {
  const { app } = await startMles()
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  try {
    const seen: string[] = []
    app.mles.subscribe('c', async () => { throw new Error('async listener bug') })
    app.mles.subscribe('c', (frame) => { seen.push(frame.data.toString()) })
    app.mles.publish('c', 'one')
    app.mles.publish('c', 'two')
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(seen, ['one', 'two'])
    assert.deepEqual(unhandled, [])
  } finally {
    process.off('unhandledRejection', onUnhandled)
    await app.close()
  }
})

test('app.mles methods work detached', async () => {
  const { app } = await startMles()
  const { publish, history, channels, metrics, close } = app.mles
  publish('c', 'detached')
  assert.equal(history('c')[0]?.data.toString(), 'detached')
  assert.equal(channels()[0]?.name, 'c')
  assert.equal(typeof metrics().active_connections, 'number')
  await close()
  await app.close()
})

test('a subscriber keeps its channel from expiring', async () => {
  const { app } = await startMles({ channelIdleMs: 50 })
  const unsubscribe = app.mles.subscribe('watched', () => {})
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.deepEqual(app.mles.channels().map((c) => c.name), ['watched'])
  unsubscribe()
  await waitFor(() => app.mles.channels().length === 0, 'expiry after unsubscribe')
  await app.close()
})

test('history returns copies; channels lists every channel with its members', async () => {
  const { app, url } = await startMles()
  const a = await TestClient.join(url, { uid: 'a', channel: 'one' })
  const b = await TestClient.join(url, { uid: 'b', channel: 'one' })
  const c = await TestClient.join(url, { uid: 'c', channel: 'two' })
  await waitForMembers(app, 'one', 2)
  await waitForMembers(app, 'two', 1)
  app.mles.publish('three', 'x')
  assert.deepEqual(app.mles.channels().sort((x, y) => x.name.localeCompare(y.name)), [
    { name: 'one', members: 2, historySize: 2, historyBytes: 58 },
    { name: 'three', members: 0, historySize: 1, historyBytes: 3 },
    { name: 'two', members: 1, historySize: 1, historyBytes: 29 }
  ])
  const copy = app.mles.history('three')
  copy[0].data.fill(0)
  assert.equal(app.mles.history('three')[0].data.toString(), 'x')
  assert.deepEqual(app.mles.history('unknown'), [])
  for (const client of [a, b, c]) client.close()
  await app.close()
})

test('metrics carries the seven reference metrics and counts what happens', async () => {
  const { app, url } = await startMles()
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.next()
  a.send('1')
  b.send('2')
  await a.next()
  await b.next()
  const bad = await TestClient.join(url, '{')
  await bad.closed
  await waitFor(() => app.mles.metrics().active_connections === 2, 'the refused connection to be gone')
  const metrics = app.mles.metrics()
  for (const name of ['active_connections', 'total_messages_sent', 'total_messages_received', 'total_channels',
    'total_errors', 'total_dropped_connections', 'dropped_by_ip'] as const) {
    assert.equal(typeof metrics[name], 'number', name)
  }
  assert.equal(metrics.active_connections, 2)
  assert.equal(metrics.total_messages_received, 2)
  assert.equal(metrics.total_messages_sent, 3, 'one replayed join frame and two deliveries')
  assert.equal(metrics.total_channels, 1)
  assert.equal(metrics.total_errors, 1)
  a.close()
  b.close()
  await app.close()
})
