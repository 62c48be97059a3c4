import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TestClient } from '../helpers/client.js'
import { redisForTests } from '../helpers/redis.js'
import { startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import { V1TestClient } from '../helpers/v1-client.js'

const redis = redisForTests()

async function startNode (): Promise<{ server: RunningServer, v1Port: number }> {
  const server = await startMles({ messagesPerSecond: 0, perIpLimit: 0, redis: { url: redis.url, keyPrefix: 'v1c:' }, v1: { port: 0, host: '127.0.0.1' } })
  return { server, v1Port: server.app.mles.v1Address()?.port ?? 0 }
}

test('with redis, v1 clients on different nodes share channels with each other and with WebSocket clients', async () => {
  const a = await startNode()
  const b = await startNode()
  try {
    const tcpA = await V1TestClient.join(a.v1Port, 'tcpA', 'span')
    await waitFor(() => a.server.app.mles.history('span').length === 1, 'tcpA\'s join in Redis')
    const web = await TestClient.join(b.server.url, { uid: 'web', channel: 'span' })
    assert.equal((await web.next()).text, '{"uid":"tcpA","channel":"span"}')
    const webJoin = await tcpA.next()
    assert.deepEqual([webJoin.msg.uid, webJoin.text], ['web', ''], 'a join on another node reaches v1 members')
    await waitFor(() => a.server.app.mles.history('span').length === 2, 'web\'s join on node A')
    const tcpB = await V1TestClient.join(b.v1Port, 'tcpB', 'span')
    assert.deepEqual([(await tcpB.next()).msg.uid, (await tcpB.next()).msg.uid], ['tcpA', 'web'], 'tcpB\'s replay, as v1 Msgs')
    assert.equal((await tcpA.next()).msg.uid, 'tcpB')
    await waitForMembers(b.server.app, 'span', 2)

    tcpA.send('from A over v1')
    const atB = await tcpB.next()
    assert.deepEqual([atB.msg.uid, atB.text], ['tcpA', 'from A over v1'])
    assert.equal((await web.next()).text, 'from A over v1')
    web.send('from the web')
    assert.deepEqual([(await tcpA.next()).text, (await tcpB.next()).text], ['from the web', 'from the web'])
    tcpB.send('from B over v1')
    assert.equal((await tcpA.next()).msg.uid, 'tcpB')

    // A uid is taken cluster-wide for v1 clients too.
    const twin = await V1TestClient.join(b.v1Port, 'tcpA', 'span')
    assert.equal(await twin.closedWithin(), true)
    tcpA.close()
    tcpB.close()
  } finally {
    await Promise.all([a.server.app.close(), b.server.app.close()])
  }
})
