import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TestClient } from '../helpers/client.js'
import { redisForTests } from '../helpers/redis.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import type { MlesOptions } from '../../src/index.js'

const redis = redisForTests()
let prefixSerial = 0

async function startNodes (count: number, options: MlesOptions = {}): Promise<{ nodes: RunningServer[], close: () => Promise<void> }> {
  const keyPrefix = `presence${++prefixSerial}:`
  const nodes: RunningServer[] = []
  for (let i = 0; i < count; i++) nodes.push(await startMles({ messagesPerSecond: 0, perIpLimit: 0, ...options, redis: { url: redis.url, keyPrefix, leaseTtlMs: 3000 } }))
  return { nodes, close: async () => { await Promise.all(nodes.map(async (node) => { await node.app.close() })) } }
}

test('members() lists the uids of every node, and only of that channel (glob characters in names included)', async () => {
  const { nodes, close } = await startNodes(2)
  const clients = [
    await TestClient.join(nodes[0].url, { uid: 'alice', channel: 'a*' }),
    await TestClient.join(nodes[1].url, { uid: 'bob', channel: 'a*' }),
    await TestClient.join(nodes[1].url, { uid: 'carol', channel: 'ab' }),
    await TestClient.join(nodes[0].url, { uid: 'dave', channel: 'x[1]' })
  ]
  await waitForMembers(nodes[0].app, 'a*', 1)
  await waitForMembers(nodes[1].app, 'a*', 1)
  await waitForMembers(nodes[1].app, 'ab', 1)
  await waitForMembers(nodes[0].app, 'x[1]', 1)
  for (const node of nodes) {
    assert.deepEqual(await node.app.mles.members('a*'), ['alice', 'bob'])
    assert.deepEqual(await node.app.mles.members('ab'), ['carol'])
    assert.deepEqual(await node.app.mles.members('x[1]'), ['dave'])
    assert.deepEqual(await node.app.mles.members('x1'), [])
  }
  clients[1].close()
  await waitFor(() => false === (nodes[1].app.mles.channels().some((channel) => channel.name === 'a*' && channel.members > 0)), 'bob gone')
  let listed: string[] = []
  for (let i = 0; i < 100; i++) {
    listed = await nodes[0].app.mles.members('a*')
    if (listed.length === 1) break
    await sleep(10)
  }
  assert.deepEqual(listed, ['alice'], 'a leave gives the uid back cluster-wide')
  for (const client of clients) client.close()
  await close()
})

test('authorize in cluster mode: frames held while it and the cluster join run are published in order, read-only holds across nodes', async () => {
  const { nodes, close } = await startNodes(2, {
    allowedOrigins: ['*'],
    authorize: async (_request, join) => {
      await sleep(join.uid === 'slow' ? 100 : 0)
      return join.uid === 'reader' ? { publish: false } : join.uid !== 'intruder'
    }
  })
  const listener = await TestClient.join(nodes[1].url, { uid: 'listener', channel: 'c' })
  await waitForMembers(nodes[1].app, 'c', 1)
  const slow = await TestClient.connect(nodes[0].url)
  slow.send(JSON.stringify({ uid: 'slow', channel: 'c' }))
  for (let i = 0; i < 30; i++) slow.send(`#${i}`)
  assert.deepEqual(await listener.texts(30, 5000), Array.from({ length: 30 }, (_, i) => `#${i}`))
  const intruder = await TestClient.join(nodes[0].url, { uid: 'intruder', channel: 'c' })
  assert.deepEqual(await intruder.closedWithin(), { code: 1008, reason: 'forbidden' })
  const reader = await TestClient.join(nodes[0].url, { uid: 'reader', channel: 'c' })
  await waitForMembers(nodes[0].app, 'c', 2)
  reader.send('from the reader')
  slow.send('after the reader spoke')
  assert.equal((await listener.next()).text, 'after the reader spoke')
  assert.equal(nodes[0].app.mles.metrics().dropped_messages_readonly, 1)
  assert.deepEqual(await nodes[1].app.mles.members('c'), ['listener', 'reader', 'slow'])
  for (const client of [listener, slow, reader]) client.close()
  await close()
})

test('the HTTP API answers history and members cluster-wide: a node that holds nothing of the channel reads Redis', async () => {
  const key = 'k'.repeat(24)
  const { nodes, close } = await startNodes(2, { api: { key } })
  const member = await TestClient.join(nodes[0].url, { uid: 'alice', channel: 'news' })
  await waitForMembers(nodes[0].app, 'news', 1)
  member.send('first')
  member.send(Buffer.from([0, 255]))
  await waitFor(() => nodes[0].app.mles.history('news').length === 3, 'three frames in the history')
  const get = async (path: string): Promise<unknown> => {
    const response = await fetch(`${nodes[1].url.replace('ws:', 'http:').replace(/\/$/, '')}/_mles/api${path}`, { headers: { authorization: `Bearer ${key}` } })
    assert.equal(response.status, 200)
    return await response.json()
  }
  assert.equal(nodes[1].app.mles.channels().some((channel) => channel.name === 'news'), false, 'node B holds nothing of it')
  assert.deepEqual(await get('/channels/news/history'), { frames: [{ data: '{"uid":"alice","channel":"news"}', binary: false }, { data: 'first', binary: false }, { data: 'AP8=', binary: true }] })
  assert.deepEqual(await get('/channels/news/members'), { members: ['alice'] })
  assert.deepEqual(await get('/channels/none/history'), { frames: [] })
  member.close()
  await close()
})

test('uid leases are renewed in one call per interval (and the channel registrations in another), kept past their TTL, and a lease taken over is reported', async () => {
  const keyPrefix = `leases${++prefixSerial}:`
  const options = { messagesPerSecond: 0, perIpLimit: 0, redis: { url: redis.url, keyPrefix, leaseTtlMs: 300 } }
  const a = await startMles(options)
  const b = await startMles(options)
  const members = await Promise.all(Array.from({ length: 20 }, async (_, i) => await TestClient.join(a.url, { uid: `m${i}`, channel: 'leased' })))
  await waitForMembers(a.app, 'leased', 20)
  await sleep(150)
  const evalCalls = async (): Promise<number> => {
    const stats = await redis.inspector.info('commandstats')
    return Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0)
  }
  const before = await evalCalls()
  await sleep(1000) // ten renewal intervals, three lease lifetimes
  const calls = await evalCalls() - before
  assert.ok(calls >= 10 && calls <= 30, `${calls} script calls for 20 leases and their channel over 10 intervals`)
  const duplicate = await TestClient.join(b.url, { uid: 'm3', channel: 'leased' })
  assert.deepEqual(await duplicate.closedWithin(), { code: 1008, reason: 'uid already joined on this channel' }, 'the lease outlived its TTL')
  assert.ok(await redis.inspector.pttl(`${keyPrefix}u:6:leased:m3`) > 0)
  const errors = a.app.mles.metrics().cluster_errors
  await redis.inspector.set(`${keyPrefix}u:6:leased:m5`, 'another-node:1', 'PX', 5000)
  await waitFor(() => a.app.mles.metrics().cluster_errors > errors, 'the taken-over lease reported')
  for (const member of members) member.close()
  await Promise.all([a.app.close(), b.app.close()])
})
