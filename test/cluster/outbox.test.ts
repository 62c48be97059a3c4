import assert from 'node:assert/strict'
import { test } from 'node:test'
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
