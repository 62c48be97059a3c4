import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TestClient } from '../helpers/client.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import { V1TestClient } from '../helpers/v1-client.js'
import { computeAuth, type MlesOptions } from '../../src/index.js'
import { parsePeerAddress } from '../../src/options.js'

const KEY = 'k'

async function start (v1: NonNullable<MlesOptions['v1']>): Promise<{ server: RunningServer, v1Port: number }> {
  const server = await startMles({ key: KEY, messagesPerSecond: 0, perIpLimit: 0, v1: { host: '127.0.0.1', ...v1 } })
  return { server, v1Port: server.app.mles.v1Address()?.port ?? 0 }
}

function webJoin (server: RunningServer, uid: string, channel: string): Promise<TestClient> {
  return TestClient.join(server.url, { uid, channel, auth: computeAuth(uid, channel, KEY) })
}

test('--v1-peer addresses: HOST, HOST:PORT, [IPv6]:PORT; port 8077 by default', () => {
  assert.deepEqual(parsePeerAddress('mles.example.com'), { host: 'mles.example.com', port: 8077 })
  assert.deepEqual(parsePeerAddress('10.0.0.1:9000'), { host: '10.0.0.1', port: 9000 })
  assert.deepEqual(parsePeerAddress('[::1]:8078'), { host: '::1', port: 8078 })
  for (const bad of ['', 'a b', 'host:0', 'host:70000', '::1', '[::1']) assert.equal(parsePeerAddress(bad), null, bad)
})

test('a peer link carries a channel between two servers both ways, without loops, and resyncs after the peer comes back', async () => {
  let b = await start({ port: 0 })
  const bPort = b.v1Port
  const a = await start({ port: 0, peer: `127.0.0.1:${bPort}`, peerRetryMinMs: 100, peerRetryMaxMs: 400 })
  try {
    const a1 = await webJoin(a.server, 'a1', 'linked')
    // The link joins B as a v1 client, with a1's join.
    await waitForMembers(b.server.app, 'linked', 1)
    assert.deepEqual(b.server.app.mles.history('linked').map((frame) => frame.data.toString()), ['{"uid":"a1","channel":"linked"}'])

    const b1 = await V1TestClient.join(bPort, 'b1', 'linked', { sharedKey: KEY })
    assert.deepEqual([(await b1.next()).msg.uid], ['a1'], 'b1\'s replay: a1\'s join')
    const b2 = await webJoin(b.server, 'b2', 'linked')
    await b2.texts(2)
    assert.equal((await b1.next()).msg.uid, 'b2', 'v1 members hear of joins')
    await waitForMembers(b.server.app, 'linked', 3)

    a1.send('from A')
    const atB1 = await b1.next()
    assert.deepEqual([atB1.msg.uid, atB1.text], ['a1', 'from A'])
    assert.equal((await b2.next()).text, 'from A')

    b1.send('from B (v1)')
    b2.send('from B (v2)')
    const atA = [(await a1.next()).text, (await a1.next()).text].sort()
    assert.deepEqual(atA, ['from B (v1)', 'from B (v2)'])
    assert.equal((await b1.next()).text, 'from B (v2)')
    await a1.expectSilence(200)
    assert.equal(b1.pending, 0, 'nothing comes back to its sender through the link')
    assert.deepEqual(a.server.app.mles.history('linked').slice(-3).map((frame) => frame.data.toString()).sort(), ['from A', 'from B (v1)', 'from B (v2)'])

    // The peer goes away and comes back empty: the link returns (with backoff) and gives it A's history.
    b1.close()
    b2.close()
    await b.server.app.close()
    a1.send('while B is away')
    await sleep(300)
    b = await start({ port: bPort })
    await waitForMembers(b.server.app, 'linked', 1)
    await waitFor(() => b.server.app.mles.history('linked').some((frame) => frame.data.toString() === 'while B is away'), 'A\'s history resynced to B', 5000)
    const newcomer = await webJoin(b.server, 'late', 'linked')
    const replay = await newcomer.texts(b.server.app.mles.history('linked').length)
    assert.ok(replay.includes('from A') && replay.includes('while B is away'), replay.join(' | '))

    // The last local member leaves: the link goes too.
    a1.close()
    await waitForMembers(b.server.app, 'linked', 1)
    newcomer.close()
  } finally {
    await a.server.app.close()
    await b.server.app.close()
  }
})
