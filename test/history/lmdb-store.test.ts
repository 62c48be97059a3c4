import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { LmdbHistoryStore, type LmdbHistoryStoreOptions } from '../../src/history/lmdb-store.js'
import { encodeFrame, framePayload, isBinaryFrame } from '../../src/protocol/frame.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/history-disk.ts', import.meta.url))
const run = promisify(execFile)

function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mles-history-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function openStore (dir: string, options: Partial<LmdbHistoryStoreOptions> = {}): LmdbHistoryStore {
  return new LmdbHistoryStore({ dir, flushIntervalMs: 60_000, channelIdleMs: 60_000, ...options })
}

const text = (payload: string): Buffer => encodeFrame(Buffer.from(payload), false)
const described = (wires: Buffer[]): string[] => wires.map((wire) => (isBinaryFrame(wire) ? 'bin:' : '') + framePayload(wire).toString('latin1'))

/** Appends frames the way a ring of `limit` frames reports them. */
function appendAll (store: LmdbHistoryStore, channel: string, payloads: string[], limit = Infinity, already = 0): void {
  payloads.forEach((payload, i) => { store.append(channel, text(payload), Math.min(limit, already + i + 1)) })
}

/** What the database in `dir` holds, read by another process while the store may be open. */
async function onDisk (dir: string): Promise<{ frames: number, channels: number }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', FIXTURE, 'count', dir])
  return JSON.parse(stdout) as { frames: number, channels: number }
}

test('frames come back in order, text and binary, after flush and reopen', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  store.append('c', text('{"uid":"a","channel":"c"}'), 1)
  store.append('c', text('one'), 2)
  store.append('c', encodeFrame(Buffer.from([0, 1, 255]), true), 3)
  store.append('c', encodeFrame(Buffer.alloc(70_000, 7), true), 4) // 10-byte header
  store.append('other', text('elsewhere'), 1)
  await store.flush()
  await store.close()

  const reopened = openStore(dir)
  const wires = reopened.load('c')
  assert.deepEqual(described(wires.slice(0, 3)), ['{"uid":"a","channel":"c"}', 'one', 'bin:\x00\x01\xff'])
  assert.ok(wires[3].equals(encodeFrame(Buffer.alloc(70_000, 7), true)))
  assert.deepEqual(described(reopened.load('other')), ['elsewhere'])
  assert.deepEqual(reopened.load('unknown'), [])
  await reopened.close()
})

test('load includes frames recorded but not yet written; close writes them', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  appendAll(store, 'c', ['a', 'b'])
  assert.deepEqual(described(store.load('c')), ['a', 'b'])
  assert.deepEqual(await onDisk(dir), { frames: 0, channels: 0 }, 'nothing written before a flush')
  await store.flush()
  appendAll(store, 'c', ['c', 'd'], Infinity, 2)
  assert.deepEqual(described(store.load('c')), ['a', 'b', 'c', 'd'], 'written and recorded together')
  await store.close()
  const reopened = openStore(dir)
  assert.deepEqual(described(reopened.load('c')), ['a', 'b', 'c', 'd'])
  await reopened.close()
})

test('the timer writes recorded frames every flushIntervalMs', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir, { flushIntervalMs: 50 })
  appendAll(store, 'c', ['a', 'b', 'c'])
  const deadline = Date.now() + 5000
  while ((await onDisk(dir)).frames < 3) {
    assert.ok(Date.now() < deadline, 'written by the timer within 5 s')
  }
  assert.deepEqual(await onDisk(dir), { frames: 3, channels: 1 })
  await store.close()
})

test('only the newest `kept` frames stay, in memory and on disk', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  appendAll(store, 'c', ['0', '1', '2', '3', '4'], 3)
  assert.deepEqual(described(store.load('c')), ['2', '3', '4'], 'trimmed before any write')
  await store.flush()
  assert.equal((await onDisk(dir)).frames, 3)
  appendAll(store, 'c', ['5', '6'], 3, 5)
  await store.flush()
  assert.deepEqual(await onDisk(dir), { frames: 3, channels: 1 })
  // The ring may hold fewer after a big frame evicts several (historyMaxBytes).
  store.append('c', text('big'), 1)
  assert.deepEqual(described(store.load('c')), ['big'])
  await store.close()
  assert.deepEqual(await onDisk(dir), { frames: 1, channels: 1 })
  const reopened = openStore(dir)
  assert.deepEqual(described(reopened.load('c')), ['big'])
  // A later run with a larger ring keeps counting on from the stored frames.
  reopened.append('c', text('next'), 2)
  assert.deepEqual(described(reopened.load('c')), ['big', 'next'])
  await reopened.close()
  const third = openStore(dir)
  assert.deepEqual(described(third.load('c')), ['big', 'next'])
  await third.close()
})

test('forget drops a channel at once; a channel of the same name starts empty', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  appendAll(store, 'gone', ['a', 'b'])
  appendAll(store, 'stays', ['x'])
  await store.flush()
  appendAll(store, 'gone', ['c'], Infinity, 2)
  store.forget('gone')
  assert.deepEqual(store.load('gone'), [])
  appendAll(store, 'gone', ['new'])
  assert.deepEqual(described(store.load('gone')), ['new'])
  store.forget('never-stored') // no-op
  await store.flush()
  assert.deepEqual(await onDisk(dir), { frames: 2, channels: 2 })
  await store.close()
  const reopened = openStore(dir)
  assert.deepEqual(described(reopened.load('gone')), ['new'])
  assert.deepEqual(described(reopened.load('stays')), ['x'])
  reopened.forget('stays')
  await reopened.close()
  assert.deepEqual(await onDisk(dir), { frames: 1, channels: 1 })
})

test('channels idle for channelIdleMs are dropped when the store opens', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  appendAll(store, 'old', ['a', 'b'])
  await store.close()
  await new Promise((resolve) => setTimeout(resolve, 300))
  const later = openStore(dir)
  appendAll(later, 'fresh', ['f'])
  await later.close()

  const idle = openStore(dir, { channelIdleMs: 200 })
  assert.deepEqual(idle.load('old'), [], 'idle for 300 ms and more')
  assert.deepEqual(described(idle.load('fresh')), ['f'])
  appendAll(idle, 'old', ['again'])
  assert.deepEqual(described(idle.load('old')), ['again'])
  await idle.close()
  assert.deepEqual(await onDisk(dir), { frames: 2, channels: 2 })
})

test('any ASCII channel name, NUL included, of any length, has frames of its own', async (t) => {
  const dir = tempDir(t)
  const every = Array.from({ length: 128 }, (_, code) => String.fromCharCode(code)).join('')
  const names = ['a', 'a\0', '\0a', 'a\0b', 'a\0\0b', '\0', '\0\0', 'ab', 'a b', every, every.slice(1), 'x'.repeat(5000), 'x'.repeat(5001), '\x7f\x00\x01']
  const store = openStore(dir)
  names.forEach((name, i) => { appendAll(store, name, [`${i}-1`, `${i}-2`]) })
  await store.close()
  const reopened = openStore(dir)
  names.forEach((name, i) => { assert.deepEqual(described(reopened.load(name)), [`${i}-1`, `${i}-2`], JSON.stringify(name.slice(0, 20))) })
  assert.deepEqual(reopened.load('a\0c'), [])
  await reopened.close()
})

test('a write that fails (file size limit) is reported, retried, and never crashes the process', async (t) => {
  const dir = tempDir(t)
  // SIGXFSZ ignored: an oversized write fails with EFBIG instead of killing the process.
  const { stdout } = await run('bash', ['-c', `trap '' XFSZ; ulimit -S -f 2048; exec "${process.execPath}" --import tsx "${FIXTURE}" disk-full "${dir}"`])
  const [failed, recovered, reopened] = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.equal(failed.step, 'failed', stdout)
  const at = failed.at as number
  assert.ok(at > 3 && at < 40, `failed after some 2 MB (frame ${at})`)
  assert.equal(failed.failures, 1)
  assert.deepEqual(failed.reported, [failed.message], 'reported through onWriteError with the cause')
  assert.doesNotMatch(failed.message as string, /Commit failed/, 'the cause, not lmdb-js\'s wrapper')
  assert.deepEqual(recovered, { step: 'recovered', recovered: 1, failures: 1, kept: at + 1 }, 'retried once the limit was lifted')
  assert.deepEqual(reopened, { step: 'reopened', kept: Array.from({ length: at + 1 }, (_, i) => i) }, 'nothing lost, in order')
})

test('opening fails with the cause when the directory cannot be made', (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'a-file')
  writeFileSync(file, 'x')
  assert.throws(() => openStore(file), /EEXIST|ENOTDIR/)
  assert.throws(() => openStore(join(file, 'sub')), /ENOTDIR/)
})

test('close is idempotent; appends after it are ignored', async (t) => {
  const dir = tempDir(t)
  const store = openStore(dir)
  appendAll(store, 'c', ['a'])
  const closing = store.close()
  store.append('c', text('late'), 2)
  await Promise.all([closing, store.close()])
  const reopened = openStore(dir)
  assert.deepEqual(described(reopened.load('c')), ['a'])
  await reopened.close()
})
