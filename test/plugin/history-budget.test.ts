import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'
import { capturedLog } from '../helpers/log.js'
import type { FastifyInstance } from 'fastify'

const BUDGET = 100_000
/** Each frame: a 1000-byte text payload, 1004 bytes on the wire. */
const frame = (channel: string, i: number): string => `${channel}:${String(i).padStart(5, '0')}:`.padEnd(1000, '.')
const UNBOUNDED = { messagesPerSecond: 0, perIpLimit: 0, perIpChannelLimit: 0 }

function held (app: FastifyInstance): number {
  return app.mles.channels().reduce((sum, channel) => sum + channel.historyBytes, 0)
}

test('past historyTotalBytes the channels without members lose their history first, least recently active first; the total stays within the budget', async () => {
  const { app, url } = await startMles({ ...UNBOUNDED, historyTotalBytes: BUDGET })
  let appended = 0
  for (const channel of ['idle-old', 'idle-new']) {
    const client = await TestClient.join(url, { uid: 'u', channel })
    await waitForMembers(app, channel, 1)
    for (let i = 0; i < 20; i++) client.send(frame(channel, i))
    await waitFor(() => app.mles.history(channel).length === 21, `${channel}'s history`)
    client.close()
    await waitForMembers(app, channel, 0)
    appended += 21
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const live = await TestClient.join(url, { uid: 'keeper', channel: 'live' })
  await waitForMembers(app, 'live', 1)
  for (let i = 0; i < 10; i++) live.send(frame('live', i))
  await waitFor(() => app.mles.history('live').length === 11, 'live history')
  appended += 11
  assert.equal(app.mles.metrics().history_evicted_frames, 0, 'nothing evicted below the budget')

  // 60 KB more would pass 100 KB: idle-old goes whole, then idle-new as far as needed.
  const flood = await TestClient.join(url, { uid: 'flooder', channel: 'flood' })
  await waitForMembers(app, 'flood', 1)
  for (let i = 0; i < 60; i++) flood.send(frame('flood', i))
  await waitFor(() => app.mles.history('flood').length === 61, 'flood history')
  appended += 61
  const names = app.mles.channels().map((channel) => channel.name)
  assert.ok(!names.includes('idle-old'), 'the least recently active channel without members is forgotten first')
  assert.deepEqual(app.mles.history('live').length, 11, 'a channel with members keeps its history while idle ones can give')
  const metrics = app.mles.metrics()
  assert.ok(metrics.history_bytes <= BUDGET, `history_bytes ${metrics.history_bytes} within ${BUDGET}`)
  assert.equal(metrics.history_bytes, held(app), 'history_bytes is the sum of the channels\' historyBytes')
  const kept = app.mles.channels().reduce((sum, channel) => sum + channel.historySize, 0)
  assert.equal(kept + metrics.history_evicted_frames, appended, 'every frame is either kept or counted as evicted')
  live.close()
  flood.close()
  await app.close()
})

test('a flood in one channel with members cannot take another one in use below its share; every replay is a gap-free tail', async () => {
  const { app, url } = await startMles({ ...UNBOUNDED, historyTotalBytes: BUDGET })
  const quiet = await TestClient.join(url, { uid: 'q', channel: 'quiet' })
  await waitForMembers(app, 'quiet', 1)
  for (let i = 0; i < 20; i++) quiet.send(frame('quiet', i))
  await waitFor(() => app.mles.history('quiet').length === 21, 'quiet history')

  const flooder = await TestClient.join(url, { uid: 'f', channel: 'busy' })
  const watcher = await TestClient.join(url, { uid: 'w', channel: 'busy' })
  await waitForMembers(app, 'busy', 2)
  const SENT = 300
  for (let i = 0; i < SENT; i++) flooder.send(frame('busy', i))
  const seen = (await watcher.texts(SENT + 1)).slice(1)
  assert.deepEqual(seen, Array.from({ length: SENT }, (_, i) => frame('busy', i)), 'live members get every frame, whatever the budget')
  await waitFor(() => app.mles.metrics().total_messages_received === 20 + SENT, 'all received')

  const metrics = app.mles.metrics()
  assert.ok(metrics.history_bytes <= BUDGET, `history_bytes ${metrics.history_bytes} within ${BUDGET}`)
  assert.ok(metrics.history_evicted_frames > 0)
  // The share of each of the two channels in use: (budget − slack) / 2 ≈ 46 KB; quiet holds 21 KB.
  assert.equal(app.mles.history('quiet').length, 21, 'the quiet channel keeps all it had (below its share)')

  // A joiner of the busy channel is replayed the newest frames, in order, none missing between them.
  const late = await TestClient.join(url, { uid: 'late', channel: 'busy' })
  const history = app.mles.history('busy').map((entry) => entry.data.toString())
  const replay = await late.texts(history.length)
  assert.deepEqual(replay, history)
  const data = replay.filter((text) => text.startsWith('busy:'))
  const numbers = data.map((text) => Number(text.split(':')[1]))
  assert.equal(numbers.at(-1), SENT - 1, 'the newest frame is kept')
  numbers.forEach((n, i) => { if (i > 0) assert.equal(n, numbers[i - 1] + 1, 'no gap in the replay') })
  assert.ok(data.length >= 40, `the busy channel keeps about its share (${data.length} frames)`)
  for (const client of [quiet, flooder, watcher, late]) client.close()
  await app.close()
})

test('a frame larger than the whole budget is delivered but not kept, and counted', async () => {
  const { app, url } = await startMles({ ...UNBOUNDED, historyTotalBytes: 3000, historyMaxBytes: 10_000 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.next()
  const big = 'x'.repeat(5000)
  a.send(big)
  assert.equal((await b.next()).text, big)
  a.send('small')
  assert.equal((await b.next()).text, 'small')
  await waitFor(() => app.mles.metrics().total_messages_received === 2, 'received')
  const history = app.mles.history('c').map((frame) => frame.data.toString())
  assert.ok(!history.includes(big))
  assert.equal(history.at(-1), 'small')
  assert.ok(app.mles.metrics().history_bytes <= 3000)
  assert.ok(app.mles.metrics().history_evicted_frames >= 1)
  a.close()
  b.close()
  await app.close()
})

test('evictions are logged at warn at most once a minute, however many there are', async () => {
  const log = capturedLog()
  const { app, url } = await startMles({ ...UNBOUNDED, historyTotalBytes: 20_000 }, undefined, { logger: { level: 'info', stream: log.stream } })
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  for (let i = 0; i < 200; i++) client.send(frame('c', i))
  await waitFor(() => app.mles.metrics().total_messages_received === 200, 'received')
  assert.ok(app.mles.metrics().history_evicted_frames > 100)
  const lines = log.lines.filter((line) => line.msg.includes('historyTotalBytes'))
  assert.equal(lines.length, 1, 'one line for the minute')
  assert.equal(lines[0].level, 40)
  assert.match(lines[0].msg, /at most once a minute/)
  client.close()
  await app.close()
})

test('historyTotalBytes: 0 sets no bound', async () => {
  const { app, url } = await startMles({ ...UNBOUNDED, historyTotalBytes: 0 })
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  for (let i = 0; i < 150; i++) client.send(frame('c', i))
  await waitFor(() => app.mles.history('c').length === 151, 'all kept')
  assert.ok(app.mles.metrics().history_bytes > 150_000)
  assert.equal(app.mles.metrics().history_evicted_frames, 0)
  client.close()
  await app.close()
})

test('a channel forgotten after channelIdleMs gives its bytes back to the budget', async () => {
  const { app, url } = await startMles({ ...UNBOUNDED, channelIdleMs: 100 })
  const client = await TestClient.join(url, { uid: 'a', channel: 'short-lived' })
  await waitForMembers(app, 'short-lived', 1)
  for (let i = 0; i < 5; i++) client.send(frame('short-lived', i))
  await waitFor(() => app.mles.history('short-lived').length === 6, 'history')
  assert.ok(app.mles.metrics().history_bytes > 5000)
  client.close()
  await waitFor(() => app.mles.channels().length === 0, 'the channel forgotten', 5000)
  assert.equal(app.mles.metrics().history_bytes, 0)
  assert.equal(app.mles.metrics().history_evicted_frames, 0, 'expiry is not eviction')
  await app.close()
})
