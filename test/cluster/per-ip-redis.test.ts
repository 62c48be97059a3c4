import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { TestClient, refusedUpgrade } from '../helpers/client.js'
import { redisForTests } from '../helpers/redis.js'
import { startMles, waitForMembers, type RunningServer } from '../helpers/server.js'
import type { MlesOptions } from '../../src/index.js'

const redis = redisForTests()
const KEY = 'k3y-for-the-tests-0123456789'
let prefixSerial = 0

async function startNodes (options: MlesOptions, connectTimeoutMs = 5000): Promise<{ nodes: RunningServer[], prefix: string, close: () => Promise<void> }> {
  const prefix = `ip${++prefixSerial}:`
  const nodes = [
    await startMles({ ...options, redis: { url: redis.url, keyPrefix: prefix, connectTimeoutMs } }),
    await startMles({ ...options, redis: { url: redis.url, keyPrefix: prefix, connectTimeoutMs } })
  ]
  return { nodes, prefix, close: async () => { await Promise.all(nodes.map(async (node) => { await node.app.close() })) } }
}

describe('the per-IP limit with redis', () => {
  test('two nodes sharing Redis share one limit per address', async () => {
    const { nodes: [a, b], prefix, close } = await startNodes({ perIpLimit: 3, perIpWindowMs: 60_000 })
    try {
      const clients = [await TestClient.connect(a.url), await TestClient.connect(b.url), await TestClient.connect(a.url)]
      for (const node of [b, a]) {
        const refused = await refusedUpgrade(node.url)
        assert.equal(refused.status, 429)
        assert.ok(Number(refused.headers['retry-after']) >= 59)
        assert.equal(JSON.parse(refused.body).message, 'at most 3 connections per 60 s from one address')
      }
      assert.equal(a.app.mles.metrics().dropped_by_ip, 1)
      assert.equal(b.app.mles.metrics().dropped_by_ip, 1)
      // one count, in Redis, under the cluster's key prefix
      const keys = await redis.inspector.keys(`${prefix}per-ip:*`)
      assert.deepEqual(keys, [`${prefix}per-ip:GET/-127.0.0.1`])
      assert.equal(await redis.inspector.get(keys[0]), '5')
      for (const client of clients) client.close()
    } finally {
      await close()
    }
  })

  test('another key prefix is another cluster, with a limit of its own', async () => {
    const first = await startNodes({ perIpLimit: 1 })
    const second = await startNodes({ perIpLimit: 1 })
    try {
      const one = await TestClient.connect(first.nodes[0].url)
      const two = await TestClient.connect(second.nodes[1].url)
      assert.equal((await refusedUpgrade(first.nodes[1].url)).status, 429)
      assert.equal((await refusedUpgrade(second.nodes[0].url)).status, 429)
      one.close()
      two.close()
    } finally {
      await Promise.all([first.close(), second.close()])
    }
  })

  test('the HTTP API in cluster mode: a publish on one node reaches a member on the other; the limit on keyless requests is shared', async () => {
    const { nodes: [a, b], close } = await startNodes({ perIpLimit: 2, api: { key: KEY } })
    try {
      const member = await TestClient.join(b.url, { uid: 'm', channel: 'news' })
      await waitForMembers(b.app, 'news', 1)
      const published = await fetch(`${a.origin}/_mles/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: '{"channel":"news","data":"from node a"}' })
      assert.equal(published.status, 200)
      assert.equal((await member.next(5000)).text, 'from node a')
      const members = await fetch(`${a.origin}/_mles/api/channels/news/members`, { headers: { authorization: `Bearer ${KEY}` } })
      assert.deepEqual(await members.json(), { members: ['m'] })

      assert.equal((await fetch(`${a.origin}/_mles/api/channels`)).status, 401)
      assert.equal((await fetch(`${b.origin}/_mles/api/channels`)).status, 401)
      assert.equal((await fetch(`${a.origin}/_mles/api/channels`)).status, 429)
      assert.equal((await fetch(`${b.origin}/_mles/api/channels`)).status, 429)
      member.close()
    } finally {
      await close()
    }
  })

  test('while Redis does not answer, upgrades pass after the command timeout rather than fail', async () => {
    // connectTimeoutMs 1000 makes the command timeout 1 s
    const { nodes: [a], close } = await startNodes({ perIpLimit: 1 }, 1000)
    try {
      redis.server.pause()
      const started = Date.now()
      const clients = [await TestClient.connect(a.url), await TestClient.connect(a.url)]
      assert.ok(Date.now() - started < 4000, `held up ${Date.now() - started} ms by the frozen Redis`)
      assert.equal(a.app.mles.metrics().dropped_by_ip, 0)
      for (const client of clients) client.close()
    } finally {
      redis.server.resume()
      await close()
    }
  })
})
