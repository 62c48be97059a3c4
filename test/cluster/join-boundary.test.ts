import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { decodeEntry } from '../../src/cluster/entry.js'
import { TestClient } from '../helpers/client.js'
import { redisForTests } from '../helpers/redis.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'

const redis = redisForTests()

/**
 * Every frame of a channel in the cluster order, as text: the notices the
 * nodes announce each stream entry with (pub/sub keeps them all, where the
 * stream itself is trimmed to the history limit), heard as a node of its
 * own — registered as holding the channel, so every frame is announced to it.
 */
async function recordChannel (url: string, keyPrefix: string, channel: string): Promise<{ texts: string[], joins: Map<string, number>, stop: () => void }> {
  const recorderId = 'recorder-0000-0000-0000-000000000000'
  const registrar = new Redis(url)
  await registrar.hset(`${keyPrefix}r:${channel}`, recorderId, String(Date.now() + 3_600_000))
  registrar.disconnect()
  const subscriber = new Redis(url)
  const texts: string[] = []
  const joins = new Map<string, number>()
  subscriber.on('messageBuffer', (_topic: Buffer, message: Buffer) => {
    // `previous id entry`
    const entry = decodeEntry(message.subarray(message.indexOf(0x20, message.indexOf(0x20) + 1) + 1))
    assert.ok(entry !== null)
    if (entry.join && entry.uid !== null) joins.set(entry.uid, texts.length)
    texts.push(entry.payload.toString())
  })
  await subscriber.subscribe(`${keyPrefix}n:${channel}:${recorderId}`)
  return { texts, joins, stop: () => { subscriber.disconnect() } }
}

test('randomized, 3 nodes: every joiner gets exactly the last historyLimit frames before its join in the cluster order, then every later frame once, in each publisher\'s order', async () => {
  const historyLimit = 12
  const keyPrefix = 'boundary:'
  const nodes: RunningServer[] = []
  for (let i = 0; i < 3; i++) nodes.push(await startMles({ historyLimit, messagesPerSecond: 0, perIpLimit: 0, redis: { url: redis.url, keyPrefix } }))
  const channel = 'busy'
  const recorder = await recordChannel(redis.url, keyPrefix, channel)
  // A seeded generator, so a failure can be replayed.
  let seed = Number(process.env.MLES_BOUNDARY_SEED ?? 20261202)
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }

  const publishers = await Promise.all(nodes.map(async (node, i) => await TestClient.join(node.url, { uid: `pub${i}`, channel })))
  for (const node of nodes) await waitForMembers(node.app, channel, 1)
  let publishing = true
  const sent = [0, 0, 0]
  const loops = publishers.map(async (publisher, i) => {
    while (publishing) {
      const burst = 1 + Math.floor(random() * 4)
      for (let k = 0; k < burst; k++) publisher.send(`pub${i}#${sent[i]++}`)
      await sleep(Math.floor(random() * 4))
    }
  })
  const joiners: Array<{ uid: string, client: TestClient }> = []
  for (let j = 0; j < 45; j++) {
    await sleep(Math.floor(random() * 40))
    const node = nodes[Math.floor(random() * nodes.length)]
    const uid = `joiner${j}`
    joiners.push({ uid, client: await TestClient.join(node.url, { uid, channel }) })
  }
  await sleep(100)
  publishing = false
  await Promise.all(loops)
  const total = sent.reduce((a, b) => a + b, 0)
  await waitFor(() => recorder.texts.length === total + publishers.length + joiners.length, `every frame announced (${total + publishers.length + joiners.length})`, 10_000).catch((error: Error) => {
    throw new Error(`${error.message}: ${recorder.texts.length} seen`)
  })
  recorder.stop()

  // The recorder saw each publisher's frames in order, none missing: it is the reference.
  for (let i = 0; i < publishers.length; i++) {
    const own = recorder.texts.filter((text) => text.startsWith(`pub${i}#`))
    assert.deepEqual(own, Array.from({ length: sent[i] }, (_, k) => `pub${i}#${k}`))
  }
  for (const { uid, client } of joiners) {
    const at = recorder.joins.get(uid)
    assert.ok(at !== undefined, `${uid} joined`)
    const replay = recorder.texts.slice(Math.max(0, at - historyLimit), at)
    const later = recorder.texts.slice(at + 1).filter((text) => !text.startsWith('{'))
    const expected = [...replay, ...later]
    const received: string[] = []
    try {
      for (let k = 0; k < expected.length; k++) received.push((await client.next(5000)).text)
    } catch (error) {
      assert.fail(`${uid}: ${(error as Error).message} after ${received.length} of ${expected.length}; first difference at ${received.findIndex((text, k) => text !== expected[k])}`)
    }
    assert.deepEqual(received.slice(0, replay.length), replay, `${uid}: the replay is the last ${historyLimit} frames before its join`)
    // After it, each publisher's frames in order (this node's own come as they are sent, the others' in the cluster order).
    const rest = received.slice(replay.length)
    assert.deepEqual([...rest].sort(), [...later].sort(), `${uid}: every later frame once`)
    for (let i = 0; i < publishers.length; i++) {
      const mine = (texts: string[]): string[] => texts.filter((text) => text.startsWith(`pub${i}#`))
      assert.deepEqual(mine(rest), mine(later), `${uid}: pub${i}'s frames in order`)
    }
    await client.expectSilence(20)
  }
  for (const client of [...publishers, ...joiners.map((joiner) => joiner.client)]) client.close()
  await Promise.all(nodes.map(async (node) => { await node.app.close() }))
})
