import assert from 'node:assert/strict'
import { test } from 'node:test'
import { clusterClient, startRedisCluster } from '../helpers/redis-cluster.js'

// The harness the Redis Cluster support will be tested on (issue 14, point 3): three real masters.
test('the test harness starts a 3-master Redis Cluster whose slots cover every key, and a master comes back after a restart', { timeout: 120_000 }, async () => {
  const cluster = await startRedisCluster(3)
  const client = clusterClient(cluster)
  try {
    // Keys spread over the masters; a hash tag keeps a channel's keys on one slot.
    for (let i = 0; i < 30; i++) await client.set(`key:${i}`, String(i))
    for (let i = 0; i < 30; i++) assert.equal(await client.get(`key:${i}`), String(i))
    const nodes = client.nodes('master')
    assert.equal(nodes.length, 3)
    const counts = await Promise.all(nodes.map(async (node) => await node.dbsize()))
    assert.ok(counts.every((count) => count > 0), `every master holds keys: ${counts.join(',')}`)
    assert.equal(await client.cluster('KEYSLOT', 'mles:{c}:h'), await client.cluster('KEYSLOT', 'mles:{c}:u:alice'))
    // A master restarted keeps its place (its node file) and serves its slots again, empty.
    const [first] = cluster.masters
    await first.stop()
    await first.start()
    let answered = false
    for (let i = 0; i < 200 && !answered; i++) {
      try {
        await client.set('after-restart', 'x')
        for (let k = 0; k < 30; k++) await client.set(`key:${k}`, 'again')
        answered = true
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    assert.ok(answered, 'the cluster serves every slot again')
  } finally {
    client.disconnect()
    await cluster.cleanup()
  }
})
