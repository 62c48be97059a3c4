import { test } from 'node:test'
import assert from 'node:assert/strict'
import { computeAuth } from '../../src/index.js'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

test('with a key: auth is required and must be SipHash(uid ‖ channel ‖ key)', async () => {
  const { app, url } = await startMles({ key: 'sekrit' })
  const refusals: Array<[string, object]> = [
    ['missing', { uid: 'a', channel: 'c' }],
    ['keyless hash', { uid: 'a', channel: 'c', auth: computeAuth('a', 'c') }],
    ['other key', { uid: 'a', channel: 'c', auth: computeAuth('a', 'c', 'guess') }],
    ['other uid', { uid: 'a', channel: 'c', auth: computeAuth('b', 'c', 'sekrit') }],
    ['garbage', { uid: 'a', channel: 'c', auth: 'zz' }]
  ]
  for (const [name, header] of refusals) {
    const client = await TestClient.join(url, header)
    assert.deepEqual(await client.closedWithin(), { code: 1008, reason: 'authentication failed' }, name)
  }
  assert.equal(app.mles.metrics().rejected_auth, refusals.length)
  const good = await TestClient.join(url, { uid: 'a', channel: 'c', auth: computeAuth('a', 'c', 'sekrit') })
  const upper = await TestClient.join(url, { uid: 'b', channel: 'c', auth: computeAuth('b', 'c', 'sekrit').toUpperCase() })
  await waitForMembers(app, 'c', 2)
  good.close()
  upper.close()
  await app.close()
})

test('the key may come from MLES_KEY', async () => {
  process.env.MLES_KEY = 'from-env'
  try {
    const { app, url } = await startMles()
    const refused = await TestClient.join(url, { uid: 'a', channel: 'c' })
    assert.equal((await refused.closedWithin()).reason, 'authentication failed')
    const good = await TestClient.join(url, { uid: 'a', channel: 'c', auth: computeAuth('a', 'c', 'from-env') })
    await waitForMembers(app, 'c', 1)
    good.close()
    await app.close()
  } finally {
    delete process.env.MLES_KEY
  }
})

test('without a key: auth optional, but checked when present', async () => {
  const { app, url } = await startMles()
  const none = await TestClient.join(url, { uid: 'a', channel: 'c' })
  const right = await TestClient.join(url, { uid: 'b', channel: 'c', auth: computeAuth('b', 'c') })
  await waitForMembers(app, 'c', 2)
  const wrong = await TestClient.join(url, { uid: 'd', channel: 'c', auth: computeAuth('d', 'c', 'k') })
  assert.equal((await wrong.closedWithin()).reason, 'authentication failed')
  none.close()
  right.close()
  await app.close()
})

test('the stored join frame never replays auth to later joiners', async () => {
  const { app, url } = await startMles({ key: 'k' })
  const auth = computeAuth('a', 'c', 'k')
  const a = await TestClient.join(url, { uid: 'a', channel: 'c', auth, nick: 'Alice' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c', auth: computeAuth('b', 'c', 'k') })
  const replayed = await b.next()
  assert.equal(replayed.isBinary, false)
  assert.deepEqual(JSON.parse(replayed.text), { uid: 'a', channel: 'c', nick: 'Alice' })
  assert.ok(!replayed.text.includes(auth))
  a.close()
  b.close()
  await app.close()
})
