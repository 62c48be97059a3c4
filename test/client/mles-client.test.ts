import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MlesClient, frameText, type MlesMessage } from '../../src/client/index.js'
import { computeAuth } from '../../src/index.js'
import { startMles, waitFor, waitForMembers, sleep } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

function collect (client: MlesClient): { messages: MlesMessage[], joins: MlesMessage[] } {
  const seen = { messages: [] as MlesMessage[], joins: [] as MlesMessage[] }
  client.on('message', (message) => { seen.messages.push(message) })
  client.on('join', (message) => { seen.joins.push(message) })
  return seen
}

const texts = (messages: MlesMessage[]): string[] => messages.map(frameText)

test('join, send text and binary, receive as events and as an async iterator; join frames told apart', async () => {
  const { app, url } = await startMles()
  const alice = new MlesClient(url, { uid: 'alice', channel: 'c' })
  await alice.ready
  await waitForMembers(app, 'c', 1)
  alice.send('hello')
  alice.send(new Uint8Array([1, 2, 3]))
  await waitFor(() => app.mles.history('c').length === 3, 'stored')
  const bob = new MlesClient(url, { uid: 'bob', channel: 'c' })
  const iterator = bob.messages()
  const seen = collect(bob)
  const first = await iterator.next()
  assert.deepEqual(first.value, { kind: 'join', data: '{"uid":"alice","channel":"c"}', binary: false, uid: 'alice' })
  assert.deepEqual((await iterator.next()).value, { kind: 'data', data: 'hello', binary: false })
  const binary = (await iterator.next()).value as MlesMessage
  assert.equal(binary.binary, true)
  assert.deepEqual([...(binary.data as Uint8Array)], [1, 2, 3])
  await waitForMembers(app, 'c', 2)
  alice.send(JSON.stringify({ uid: 'alice', message: 'json text' }))
  const json = (await iterator.next()).value as MlesMessage
  assert.equal(json.kind, 'data')
  assert.equal(json.uid, 'alice', 'the sender of a JSON frame with a uid is known')
  assert.deepEqual(seen.joins.map((join) => join.uid), ['alice'], 'events see the same frames')
  assert.deepEqual(texts(seen.messages), ['hello', '\u0001\u0002\u0003', '{"uid":"alice","message":"json text"}'])
  bob.close()
  assert.equal((await iterator.next()).done, true, 'the iterator ends when the client closes')
  assert.equal(bob.state, 'closed')
  alice.close()
  await app.close()
})

test('auth from the key', async () => {
  const { app, url } = await startMles({ key: 'k' })
  const good = new MlesClient(url, { uid: 'u', channel: 'c', key: 'k' })
  await good.ready
  await waitForMembers(app, 'c', 1)
  const bad = new MlesClient(url, { uid: 'v', channel: 'c', key: 'wrong' })
  const closed = new Promise<{ code: number, reason: string, willReconnect: boolean }>((resolve) => bad.once('close', resolve))
  assert.deepEqual(await closed, { code: 1008, reason: 'authentication failed', willReconnect: false })
  assert.equal(bad.state, 'closed', 'a refused join is not retried')
  good.close()
  await app.close()
  void computeAuth
})

test('duplicates are dropped (SPEC §6), within the dedup capacity', async () => {
  const { app, url } = await startMles({ messagesPerSecond: 0 })
  const small = new MlesClient(url, { uid: 'small', channel: 'c', dedup: 3 })
  const off = new MlesClient(url, { uid: 'off', channel: 'c', dedup: 0 })
  const normal = new MlesClient(url, { uid: 'normal', channel: 'c' })
  await Promise.all([small.ready, off.ready, normal.ready])
  await waitForMembers(app, 'c', 3)
  const seen = { small: collect(small), off: collect(off), normal: collect(normal) }
  const publisher = await TestClient.join(url, { uid: 'p', channel: 'c' })
  await waitForMembers(app, 'c', 4)
  for (const text of ['a', 'a', 'b', 'c', 'd', 'a', 'a']) publisher.send(text)
  await waitFor(() => seen.off.messages.length === 7, 'all seven at the client without dedup')
  await sleep(100)
  assert.deepEqual(texts(seen.normal.messages), ['a', 'b', 'c', 'd'])
  assert.deepEqual(texts(seen.small.messages), ['a', 'b', 'c', 'd', 'a'], 'with room for 3 hashes, "a" was forgotten')
  for (const client of [small, off, normal]) client.close()
  publisher.close()
  await app.close()
})

test('reconnect with backoff after the server restarts; the replay never delivers a frame twice; sends are queued meanwhile', async () => {
  const first = await startMles()
  const port = Number(new URL(first.url).port)
  const alice = new MlesClient(first.url, { uid: 'alice', channel: 'c', reconnect: { minDelayMs: 50, maxDelayMs: 200 } })
  const bob = new MlesClient(first.url, { uid: 'bob', channel: 'c', reconnect: { minDelayMs: 50, maxDelayMs: 200 } })
  const seen = collect(bob)
  const reconnects: number[] = []
  bob.on('reconnecting', (event) => { reconnects.push(event.delayMs) })
  await Promise.all([alice.ready, bob.ready])
  await waitForMembers(first.app, 'c', 2)
  alice.send('before the restart')
  await waitFor(() => seen.messages.length === 1, 'the first message')
  await first.app.close()
  await waitFor(() => bob.state === 'reconnecting' && alice.state === 'reconnecting', 'both reconnecting')
  alice.send('sent while disconnected')
  await sleep(300)
  assert.ok(reconnects.length >= 1 && reconnects.every((delay) => delay <= 200), `backoff delays ${reconnects.join(',')}`)
  const second = await startMles({}, undefined, {}, port)
  await waitFor(() => alice.state === 'open' && bob.state === 'open', 'both back', 5000)
  await waitFor(() => seen.messages.length === 2, 'the queued message', 5000)
  assert.deepEqual(texts(seen.messages), ['before the restart', 'sent while disconnected'])
  // a server that kept its history (as a durable one would) replays it on reconnect: nothing comes twice
  await second.app.close()
  await waitFor(() => bob.state === 'reconnecting', 'reconnecting again')
  const third = await startMles({}, undefined, {}, port)
  third.app.mles.publish('c', 'before the restart')
  third.app.mles.publish('c', 'sent while disconnected')
  await waitFor(() => bob.state === 'open', 'back again', 5000)
  await waitForMembers(third.app, 'c', 2)
  await sleep(200)
  assert.deepEqual(texts(seen.messages), ['before the restart', 'sent while disconnected'])
  alice.close()
  bob.close()
  await third.app.close()
})

test('resync: a restarted server gets the channel history back; a new joiner sees it exactly once', async () => {
  const first = await startMles()
  const port = Number(new URL(first.url).port)
  const options = { channel: 'c', resync: true, resyncQuietMs: 150, reconnect: { minDelayMs: 50, maxDelayMs: 200 } }
  const alice = new MlesClient(first.url, { uid: 'alice', ...options })
  const bob = new MlesClient(first.url, { uid: 'bob', ...options })
  await Promise.all([alice.ready, bob.ready])
  await waitForMembers(first.app, 'c', 2)
  alice.send('one')
  bob.send('two')
  alice.send(new Uint8Array([3]))
  await waitFor(() => first.app.mles.history('c').length === 5, 'stored before the restart')
  await first.app.close()
  const resyncs: number[] = []
  alice.on('resync', (event) => { resyncs.push(event.resent) })
  bob.on('resync', (event) => { resyncs.push(event.resent) })
  const second = await startMles({}, undefined, {}, port)
  await waitFor(() => resyncs.length === 2, 'both resynced', 5000)
  assert.ok(resyncs.some((resent) => resent > 0))
  const carol = new MlesClient(second.url, { uid: 'carol', channel: 'c' })
  const seen = collect(carol)
  await carol.ready
  await sleep(300)
  assert.deepEqual(texts(seen.messages).filter((text) => text !== '\u0003').sort(), ['one', 'two'])
  assert.equal(seen.messages.filter((message) => message.binary).length, 1)
  assert.deepEqual(seen.joins.map((join) => join.uid).sort(), ['alice', 'bob'])
  for (const client of [alice, bob, carol]) client.close()
  await second.app.close()
})

test('bad arguments are refused clearly', () => {
  assert.throws(() => new MlesClient('ws://127.0.0.1:1/', { uid: '', channel: 'c' }), /uid and channel must be non-empty strings/)
  const client = new MlesClient('ws://127.0.0.1:1/', { uid: 'u', channel: 'c', reconnect: false })
  assert.throws(() => { client.send(42 as unknown as string) }, /send a string or a Uint8Array/)
  client.close()
  assert.throws(() => { client.send('x') }, /closed/)
})

test('no server: ready rejects when reconnecting is off', async () => {
  const client = new MlesClient('ws://127.0.0.1:9/', { uid: 'u', channel: 'c', reconnect: false })
  await assert.rejects(client.ready, /closed before joining/)
  assert.equal(client.state, 'closed')
})

test('a server that takes the connection but never answers the upgrade: the attempt times out (connectTimeoutMs), is tried again, and a client without reconnect gives up', async () => {
  const { createServer } = await import('node:net')
  const held: Array<import('node:net').Socket> = []
  const silent = createServer((socket) => { held.push(socket) })
  await new Promise<void>((resolve) => { silent.listen(0, '127.0.0.1', resolve) })
  const url = `ws://127.0.0.1:${(silent.address() as { port: number }).port}/`
  try {
    const client = new MlesClient(url, { uid: 'u', channel: 'c', connectTimeoutMs: 200, reconnect: { minDelayMs: 20, maxDelayMs: 20 } })
    client.on('error', () => {})
    const closes: Array<{ code: number, reason: string, willReconnect: boolean }> = []
    client.on('close', (event) => { closes.push(event) })
    await waitFor(() => closes.length >= 2, 'two attempts timed out', 3000)
    assert.deepEqual(closes[0], { code: 1006, reason: 'connection timed out', willReconnect: true })
    assert.ok(held.length >= 2, 'and each was a new connection')
    await client.close()
    const once = new MlesClient(url, { uid: 'u', channel: 'c', connectTimeoutMs: 200, reconnect: false })
    once.on('error', () => {})
    await assert.rejects(once.ready, /closed before joining \(1006 connection timed out\)/)
    assert.equal(once.state, 'closed')
  } finally {
    for (const socket of held) socket.destroy()
    await new Promise<void>((resolve) => { silent.close(() => { resolve() }) })
  }
})

test('a join refused by the server\'s authorize is not retried; close() in a close listener stops a reconnect', async () => {
  let attempts = 0
  const { app, url } = await startMles({
    allowedOrigins: ['*'],
    authorize: (_request, join) => {
      attempts++
      if (join.channel === 'taken') return true
      return join.channel === 'bound' ? { uid: 'someone-else' } : false
    }
  })
  for (const [channel, reason] of [['closed', 'forbidden'], ['bound', 'uid not allowed']]) {
    attempts = 0
    const client = new MlesClient(url, { uid: 'u', channel, reconnect: { minDelayMs: 10, maxDelayMs: 20 } })
    const closes: Array<{ code: number, reason: string, willReconnect: boolean }> = []
    client.on('close', (event) => { closes.push(event) })
    await waitFor(() => closes.length > 0, 'the refusal')
    await sleep(100) // five retry delays
    assert.deepEqual(closes, [{ code: 1008, reason, willReconnect: false }])
    assert.equal(attempts, 1)
    assert.equal(client.state, 'closed')
  }
  // a duplicate uid is retried (the holder may be a dying connection) — unless a listener says stop
  const holder = new MlesClient(url, { uid: 'u', channel: 'taken' })
  await holder.ready
  await waitForMembers(app, 'taken', 1)
  attempts = 0
  const second = new MlesClient(url, { uid: 'u', channel: 'taken', reconnect: { minDelayMs: 10, maxDelayMs: 20 } })
  second.on('close', (event) => { if (event.willReconnect) void second.close() })
  await waitFor(() => second.state === 'closed', 'the second client closed')
  await sleep(100)
  assert.equal(attempts, 1, 'no retry after close() in the listener')
  assert.equal(second.state, 'closed')
  await holder.close()
  await app.close()
})
