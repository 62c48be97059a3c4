import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { computeAuth } from '../../src/index.js'
import { startMles } from '../helpers/server.js'

const run = promisify(execFile)
// Debian's python3-websockets lives with /usr/bin/python3 (.ci/run installs it); MLES_TEST_PYTHON overrides.
const python = process.env.MLES_TEST_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3')
const peer = fileURLToPath(new URL('./mles_peer.py', import.meta.url))

test('a client not written for this project (python3-websockets): join, publish, receive, history', async () => {
  try {
    await run(python, ['-c', 'import websockets'])
  } catch {
    assert.fail(`${python} cannot import websockets: install Debian's python3-websockets (apt-get install python3-websockets) or set MLES_TEST_PYTHON`)
  }
  const key = 'interop-key'
  const { app, url } = await startMles({ key })
  const auths = Object.fromEntries(['alice', 'bob', 'carol'].map((uid) => [uid, computeAuth(uid, 'interop', key)]))
  const { stdout } = await run(python, [peer, url, JSON.stringify(auths)], { timeout: 20_000 })
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.deepEqual(lines, [
    { 'bob replay': { text: '{"uid":"alice","channel":"interop"}' } },
    { 'bob got': [{ text: 'hello from python' }, { binary: '000102ff' }] },
    { 'alice got': { text: 'hi alice' } },
    {
      'carol history': [
        { text: '{"uid":"alice","channel":"interop"}' },
        { text: '{"uid":"bob","channel":"interop"}' },
        { text: 'hello from python' },
        { binary: '000102ff' },
        { text: 'hi alice' }
      ]
    },
    { 'duplicate closed': [1008, 'uid already joined on this channel'] }
  ])
  await app.close()
})
