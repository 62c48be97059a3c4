import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import mles, { MlesOptionError, type MlesHistoryFrame } from '../../src/index.js'
import { TestClient, type Received } from '../helpers/client.js'
import { sleep, startMles, waitFor, waitForMembers } from '../helpers/server.js'

function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mles-durable-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

const shown = (frames: Array<MlesHistoryFrame | Received>): string[] =>
  frames.map((frame) => ('isBinary' in frame && frame.isBinary ? 'bin:' : '') + frame.data.toString('latin1'))

test('a clean restart on the same historyDir loses nothing: text, binary, join and server frames, in order', async (t) => {
  const historyDir = tempDir(t)
  const first = await startMles({ historyDir })
  const a = await TestClient.join(first.url, { uid: 'a', channel: 'c' })
  await waitForMembers(first.app, 'c', 1)
  a.send('one')
  a.send(Buffer.from([0, 1, 255]))
  const b = await TestClient.join(first.url, { uid: 'b', channel: 'c' })
  await waitForMembers(first.app, 'c', 2)
  b.send('two'.repeat(100))
  await waitFor(() => first.app.mles.history('c').length === 5, 'b\'s frame stored')
  first.app.mles.publish('c', 'from the server')
  const odd = await TestClient.join(first.url, { uid: 'z', channel: 'c\0with NUL' })
  odd.send('elsewhere')
  await waitFor(() => first.app.mles.history('c').length === 6 && first.app.mles.history('c\0with NUL').length === 2, 'every frame stored')
  const before = shown(first.app.mles.history('c'))
  assert.deepEqual(before, ['{"uid":"a","channel":"c"}', 'one', 'bin:\x00\x01\xff', '{"uid":"b","channel":"c"}', 'two'.repeat(100), 'from the server'])
  await first.app.close()
  await Promise.all([a.closed, b.closed, odd.closed])

  const second = await startMles({ historyDir })
  assert.deepEqual(shown(second.app.mles.history('c')), before, 'app.mles.history before anyone uses the channel')
  const joiner = await TestClient.join(second.url, { uid: 'j', channel: 'c' })
  const replay = await Promise.all(before.map(async () => await joiner.next()))
  assert.deepEqual(shown(replay), before)
  await joiner.expectSilence()
  const other = await TestClient.join(second.url, { uid: 'y', channel: 'c\0with NUL' })
  assert.deepEqual(await other.texts(2), ['{"uid":"z","channel":"c\\u0000with NUL"}', 'elsewhere'])
  joiner.close()
  other.close()
  await second.app.close()

  const third = await startMles({ historyDir })
  assert.deepEqual(shown(third.app.mles.history('c')), [...before, '{"uid":"j","channel":"c"}'], 'the second run\'s frames follow')
  await third.app.close()
})

test('the restarted history keeps to historyLimit, and to a smaller one given later', async (t) => {
  const historyDir = tempDir(t)
  const first = await startMles({ historyDir, historyLimit: 5 })
  first.app.mles.publish('c', 'x')
  for (let i = 0; i < 10; i++) first.app.mles.publish('c', `m${i}`)
  await first.app.close()

  const second = await startMles({ historyDir, historyLimit: 3 })
  assert.deepEqual(shown(second.app.mles.history('c')), ['m7', 'm8', 'm9'])
  const joiner = await TestClient.join(second.url, { uid: 'j', channel: 'c' })
  assert.deepEqual(await joiner.texts(3), ['m7', 'm8', 'm9'])
  joiner.close()
  await second.app.close()

  const third = await startMles({ historyDir, historyLimit: 10 })
  assert.deepEqual(shown(third.app.mles.history('c')), ['m8', 'm9', '{"uid":"j","channel":"c"}'], 'the join trimmed the stored frames to 3')
  await third.app.close()
})

test('a channel forgotten for idleness is gone from disk too', async (t) => {
  const historyDir = tempDir(t)
  const first = await startMles({ historyDir, channelIdleMs: 300 })
  const a = await TestClient.join(first.url, { uid: 'a', channel: 'c' })
  a.send('soon forgotten')
  await waitFor(() => first.app.mles.history('c').length === 2, 'stored')
  a.close()
  await waitFor(() => first.app.mles.channels().length === 0, 'the channel to be forgotten', 3000)
  await first.app.close()

  const second = await startMles({ historyDir })
  assert.deepEqual(second.app.mles.history('c'), [])
  await second.app.close()
})

test('channels idle longer than channelIdleMs are dropped when the store opens', async (t) => {
  const historyDir = tempDir(t)
  const first = await startMles({ historyDir })
  first.app.mles.publish('c', 'old')
  await first.app.close()
  await sleep(400)
  const second = await startMles({ historyDir, channelIdleMs: 300 })
  assert.deepEqual(second.app.mles.history('c'), [])
  await second.app.close()
})

test('a historyDir that cannot be used fails app.register with an error naming the option and the path', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'not-a-directory')
  writeFileSync(file, 'x')
  for (const historyDir of [file, join(file, 'below')]) {
    const app = Fastify()
    await assert.rejects(async () => { await app.register(mles, { historyDir }).ready() }, (error: unknown) => {
      assert.ok(error instanceof MlesOptionError)
      assert.equal(error.option, 'historyDir')
      assert.ok(error.message.startsWith(`fastify-mles: option "historyDir" cannot hold the history at ${JSON.stringify(historyDir)}: `), error.message)
      assert.match(error.message, /EEXIST|ENOTDIR/)
      return true
    })
    await app.close()
  }
})
