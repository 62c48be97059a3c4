import { test } from 'node:test'
import assert from 'node:assert/strict'
import { computeAuth, joinFrame, MLES_PROTOCOL } from '../../src/client/index.js'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('joinFrame builds the first frame, with auth when a key is given', () => {
  assert.equal(MLES_PROTOCOL, 'mles-websocket')
  assert.deepEqual(JSON.parse(joinFrame({ uid: 'u', channel: 'c' })), { uid: 'u', channel: 'c' })
  assert.deepEqual(JSON.parse(joinFrame({ uid: 'u', channel: 'c', key: 'k' })), { uid: 'u', channel: 'c', auth: computeAuth('u', 'c', 'k') })
  assert.deepEqual(JSON.parse(joinFrame({ uid: 'u', channel: 'c', authWithoutKey: true })), { uid: 'u', channel: 'c', auth: computeAuth('u', 'c') })
})

test('a server with a key accepts what joinFrame makes', async () => {
  const { app, url } = await startMles({ key: 'k' })
  const client = await TestClient.join(url, joinFrame({ uid: 'u', channel: 'c', key: 'k' }))
  await waitForMembers(app, 'c', 1)
  client.close()
  await app.close()
})
