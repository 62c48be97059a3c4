import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type * as ClientModule from '../../src/client/browser.js'
import { get, makeWebRoot, startStandalone } from '../helpers/standalone.js'
import { waitForMembers } from '../helpers/server.js'

const bundle = fileURLToPath(new URL('../../dist/browser/mles-client.js', import.meta.url))

test('the browser bundle is built, small, self-contained, and served at /_mles/client.js', async () => {
  assert.ok(existsSync(bundle), 'npm run build makes dist/browser/mles-client.js')
  const server = await startStandalone({ domains: ['a.test'], wwwroot: makeWebRoot({ 'a.test/index.html': 'x' }) })
  const answer = await get(server.address.port, '/_mles/client.js', { host: 'a.test', 'accept-encoding': 'identity' })
  assert.equal(answer.status, 200)
  assert.match(String(answer.headers['content-type']), /javascript/)
  assert.ok(answer.body.length < 40_000, `${answer.body.length} bytes`)
  const source = answer.body.toString()
  assert.ok(!/\bfrom\s*["'](siphash|node:)/.test(source), 'no bare or node: imports left')
  assert.equal((await get(server.address.port, '/_mles/client.js.map', { host: 'a.test' })).status, 200)

  // The bundle's client works end to end (in Node here; the browser tests load it in Chromium).
  const client = await import(pathToFileURL(bundle).href) as typeof ClientModule
  const alice = new client.MlesClient(`ws://127.0.0.1:${server.address.port}/`, { uid: 'alice', channel: 'b' })
  await alice.ready
  await waitForMembers(server.app, 'b', 1)
  const bob = new client.MlesClient(`ws://127.0.0.1:${server.address.port}/`, { uid: 'bob', channel: 'b' })
  const first = await bob.messages().next()
  assert.equal(first.value?.kind, 'join')
  assert.equal(client.computeAuth('a', 'b'), (await import('../../src/index.js')).computeAuth('a', 'b'))
  await alice.close()
  await bob.close()
})
