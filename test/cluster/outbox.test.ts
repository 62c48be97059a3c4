import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { sleep, startMles, waitFor, waitForMembers } from '../helpers/server.js'
import type { MlesOptions } from '../../src/index.js'

async function pair (options: MlesOptions): Promise<{ a: Awaited<ReturnType<typeof startMles>>, b: Awaited<ReturnType<typeof startMles>>, sender: TestClient, local: TestClient, remote: TestClient }> {
  const a = await startMles(options)
  const b = await startMles(options)
  const sender = await TestClient.join(a.url, { uid: 'sender', channel: 'c' })
  await waitForMembers(a.app, 'c', 1)
  const local = await TestClient.join(a.url, { uid: 'local', channel: 'c' })
  await local.texts(1)
  await waitFor(() => a.app.mles.history('c').length === 2, 'both joins placed')
  const remote = await TestClient.join(b.url, { uid: 'remote', channel: 'c' })
  await remote.texts(2)
  await sleep(50)
  return { a, b, sender, local, remote }
}

test('a frozen Redis: frames whose writes timed out are sent again, and every node applies each once, in order', async () => {
  const redis = await startRedis()
  const { a, b, sender, local, remote } = await pair({ messagesPerSecond: 0, redis: { url: redis.url, connectTimeoutMs: 300, leaseTtlMs: 900 } })
  try {
    sender.send('before')
    assert.equal((await remote.next()).text, 'before')
    redis.pause()
    for (let i = 0; i < 40; i++) {
      sender.send(`#${i}`)
      await sleep(50) // across several command timeouts and retries
    }
    redis.resume()
    sender.send('after')
    const expected = [...Array.from({ length: 40 }, (_, i) => `#${i}`), 'after']
    assert.deepEqual(await local.texts(42, 10_000), ['before', ...expected], 'this node delivered each at once')
    assert.deepEqual(await remote.texts(41, 15_000), expected, 'the other node got each once, in order')
    await remote.expectSilence(1500)
    await local.expectSilence(10)
    assert.ok(a.app.mles.metrics().cluster_errors > 0, 'the timeouts were counted')
    const history = a.app.mles.history('c').map((frame) => frame.data.toString()).filter((text) => !text.startsWith('{'))
    assert.deepEqual(history, ['before', ...expected], 'node A keeps each frame once')
  } finally {
    for (const client of [sender, local, remote]) client.close()
    await Promise.all([a.app.close(), b.app.close()])
    await redis.cleanup()
  }
})

test('past redis.outboxBytes the oldest waiting frames are dropped, counted and logged once; the rest arrive after the outage', async () => {
  const redis = await startRedis()
  const { a, b, sender, local, remote } = await pair({ messagesPerSecond: 0, redis: { url: redis.url, outboxBytes: 4000, leaseTtlMs: 900 } })
  try {
    await redis.stop()
    await waitFor(() => a.app.mles.metrics().cluster_outages === 1, 'the outage noticed')
    const payload = 'x'.repeat(60)
    for (let i = 0; i < 100; i++) sender.send(`${String(i).padStart(3, '0')}${payload}`)
    assert.equal((await local.texts(100)).length, 100, 'this node delivered all of them')
    const dropped = a.app.mles.metrics().cluster_dropped_frames
    assert.ok(dropped > 0 && dropped < 100, `${dropped} dropped`)
    await redis.restart()
    const late = await remote.texts(100 - dropped, 15_000)
    assert.deepEqual(late.map((text) => Number(text.slice(0, 3))), Array.from({ length: 100 - dropped }, (_, i) => dropped + i), 'the newest, in order')
    await remote.expectSilence(500)
  } finally {
    for (const client of [sender, local, remote]) client.close()
    await Promise.all([a.app.close(), b.app.close()])
    await redis.cleanup()
  }
})

test('Redis restarted empty: the history comes back from the nodes\' memory, the outage frames follow once, and a new node replays it all', async () => {
  const redis = await startRedis()
  const options: MlesOptions = { messagesPerSecond: 0, redis: { url: redis.url, leaseTtlMs: 900 } }
  const { a, b, sender, local, remote } = await pair(options)
  let c: Awaited<ReturnType<typeof startMles>> | undefined
  try {
    sender.send('old 1')
    remote.send('old 2')
    assert.deepEqual(await local.texts(2), ['old 1', 'old 2'])
    assert.deepEqual(await remote.texts(1), ['old 1'])
    await waitFor(() => a.app.mles.history('c').length === 5 && b.app.mles.history('c').length === 5, 'the history on both nodes')
    const before = a.app.mles.history('c').map((frame) => frame.data.toString())
    await redis.stop()
    await waitFor(() => a.app.mles.metrics().cluster_outages === 1, 'the outage noticed')
    sender.send('during 1')
    sender.send('during 2')
    assert.deepEqual(await local.texts(2), ['during 1', 'during 2'])
    await redis.restart()
    assert.deepEqual(await remote.texts(2, 15_000), ['during 1', 'during 2'])
    await waitFor(() => a.app.mles.metrics().cluster_restored_channels + b.app.mles.metrics().cluster_restored_channels === 1, 'one node restored the channel')
    await remote.expectSilence(500)
    await local.expectSilence(10)

    c = await startMles(options)
    const newcomer = await TestClient.join(c.url, { uid: 'newcomer', channel: 'c' })
    assert.deepEqual(await newcomer.texts(7, 5000), [...before, 'during 1', 'during 2'], 'the old history, then the outage frames, once each')
    await newcomer.expectSilence(300)
    sender.send('all back')
    assert.equal((await newcomer.next()).text, 'all back')
    assert.equal((await remote.next()).text, 'all back')
    newcomer.close()
  } finally {
    for (const client of [sender, local, remote]) client.close()
    await Promise.all([a.app.close(), b.app.close(), c?.app.close()])
    await redis.cleanup()
  }
})

/** Node `server`'s subscriber connection to Redis, to cut it and bring it back at chosen moments. */
function subscriberOf (server: Awaited<ReturnType<typeof startMles>>): { status: string, disconnect: () => void, connect: () => Promise<void> } {
  return (server.app.mles as unknown as { cluster: { subscriber: { status: string, disconnect: () => void, connect: () => Promise<void> } } }).cluster.subscriber
}

/** Two nodes as `pair` makes them, node B's warnings collected; B's subscription is cut while A publishes `count` frames, then comes back. */
async function catchUp (catchUpFrames: number, count: number): Promise<{ received: string[], expected: string[], gaps: number, warnings: string[] }> {
  const redis = await startRedis()
  const options: MlesOptions = { historyLimit: 5, messagesPerSecond: 0, redis: { url: redis.url, leaseTtlMs: 900, catchUpFrames } }
  const warnings: string[] = []
  const a = await startMles(options)
  const b = await startMles(options, undefined, { logger: { level: 'warn', stream: { write: (line: string) => { warnings.push(String((JSON.parse(line) as { msg: string }).msg)) } } } })
  const sender = await TestClient.join(a.url, { uid: 'sender', channel: 'c' })
  await waitForMembers(a.app, 'c', 1)
  const remote = await TestClient.join(b.url, { uid: 'remote', channel: 'c' })
  try {
    await remote.texts(1)
    sender.send('before')
    assert.equal((await remote.next()).text, 'before')
    const subscriber = subscriberOf(b)
    subscriber.disconnect()
    await waitFor(() => subscriber.status === 'end', 'B\'s subscription cut')
    const expected = Array.from({ length: count }, (_, i) => `#${i}`)
    for (const text of expected) sender.send(text)
    // Written to Redis: node A stores each frame when its notice comes back.
    await waitFor(() => a.app.mles.history('c').at(-1)?.data.toString() === `#${count - 1}`, 'the frames in Redis')
    await subscriber.connect()
    const received: string[] = []
    // Everything that can arrive has arrived once the stream's last frame is in.
    for (;;) {
      const text = (await remote.next(10_000)).text
      received.push(text)
      if (text === expected[count - 1]) break
    }
    await remote.expectSilence(300)
    sender.send('after')
    assert.equal((await remote.next()).text, 'after', 'notices flow again')
    return { received, expected, gaps: b.app.mles.metrics().cluster_unfilled_gaps, warnings }
  } finally {
    sender.close()
    remote.close()
    await Promise.all([a.app.close(), b.app.close()])
    await redis.cleanup()
  }
}

test('a node whose subscription was cut catches up from the stream: far more than historyLimit frames written meanwhile all arrive, once, in order', async () => {
  const { received, expected, gaps, warnings } = await catchUp(500, 300)
  assert.deepEqual(received, expected)
  assert.equal(gaps, 0)
  assert.deepEqual(warnings.filter((line) => line.includes('catchUpFrames')), [])
})

test('past historyLimit + redis.catchUpFrames the oldest missed frames are gone: the newest arrive in order, the gap is counted and logged once', async () => {
  const { received, expected, gaps, warnings } = await catchUp(10, 400)
  assert.ok(received.length >= 15 && received.length < 400, `${received.length} of 400 arrived`)
  assert.deepEqual(received, expected.slice(400 - received.length), 'the newest, in order')
  assert.equal(gaps, 1)
  assert.equal(warnings.filter((line) => line.includes('cluster_unfilled_gaps')).length, 1)
})

test('frames Redis took but had not announced when it restarted empty are sent again: the other node gets them once, and both histories keep them', async () => {
  const redis = await startRedis()
  const options: MlesOptions = { messagesPerSecond: 0, redis: { url: redis.url, leaseTtlMs: 900 } }
  const { a, b, sender, local, remote } = await pair(options)
  const inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
  inspect.on('error', () => {})
  let c: Awaited<ReturnType<typeof startMles>> | undefined
  try {
    await inspect.connect()
    const written = await inspect.xlen('mles:h:c')
    // No node hears the notices now, so nothing is echoed: Redis has the frames, no node has had them back.
    const subscribers = [subscriberOf(a), subscriberOf(b)]
    for (const subscriber of subscribers) subscriber.disconnect()
    await waitFor(() => subscribers.every((subscriber) => subscriber.status === 'end'), 'both subscriptions cut')
    const frames = ['taken 1', 'taken 2', 'taken 3']
    for (const text of frames) sender.send(text)
    assert.deepEqual(await local.texts(3), frames, 'this node delivered them at once')
    for (let i = 0; i < 100 && await inspect.xlen('mles:h:c') < written + 3; i++) await sleep(20)
    assert.equal(await inspect.xlen('mles:h:c'), written + 3, 'Redis took them')
    inspect.disconnect()
    await redis.stop()
    await redis.restart()
    for (const subscriber of subscribers) await subscriber.connect()
    assert.deepEqual(await remote.texts(3, 15_000), frames, 'the other node got them once, in order')
    await remote.expectSilence(500)
    await local.expectSilence(10)
    for (const node of [a, b]) {
      const history = node.app.mles.history('c').map((frame) => frame.data.toString()).filter((text) => !text.startsWith('{'))
      assert.deepEqual(history, frames, 'each node keeps each frame once')
    }
    c = await startMles(options)
    const newcomer = await TestClient.join(c.url, { uid: 'newcomer', channel: 'c' })
    assert.deepEqual((await newcomer.texts(6, 5000)).filter((text) => !text.startsWith('{')), frames, 'a new node replays them')
    newcomer.close()
  } finally {
    inspect.disconnect()
    for (const client of [sender, local, remote]) client.close()
    await Promise.all([a.app.close(), b.app.close(), c?.app.close()])
    await redis.cleanup()
  }
})
