import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MlesEndpoint } from '../src/endpoint.js'
import { startMles, waitForMembers } from './helpers/server.js'
import { TestClient } from './helpers/client.js'

test('a bug that throws while handling a frame closes that connection with 1011, nothing else', async () => {
  const { app, url } = await startMles()
  const server = app.mles as unknown as MlesEndpoint
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  await b.next()
  const publish = server.hub.publish
  server.hub.publish = () => { throw new Error('injected bug') }
  a.send('boom')
  assert.deepEqual(await a.closedWithin(), { code: 1011, reason: 'internal error' })
  server.hub.publish = publish
  const c = await TestClient.join(url, { uid: 'c', channel: 'c' })
  await waitForMembers(app, 'c', 2)
  c.send('after')
  assert.equal((await b.next()).text, 'after')
  b.close()
  c.close()
  await app.close()
})
