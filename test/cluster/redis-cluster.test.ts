import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Cluster } from 'ioredis'
import { MlesClient } from '../../src/client/index.js'
import { runCli } from '../helpers/cli.js'
import { refusedUpgrade, TestClient } from '../helpers/client.js'
import { clusterClient, startRedisCluster, type RedisClusterProcess } from '../helpers/redis-cluster.js'
import { sleep, startMles, waitFor, type RunningServer } from '../helpers/server.js'
import type { MlesOptions } from '../../src/index.js'

// The Redis engine on a real 3-master Redis Cluster (issue 14, point 3).
let cluster: RedisClusterProcess
let client: Cluster
let prefixSerial = 0

before(async () => {
  cluster = await startRedisCluster(3)
  client = clusterClient(cluster)
})

after(async () => {
  client.disconnect()
  await cluster.cleanup()
})

async function startNodes (count: number, prefix: string, options: MlesOptions = {}): Promise<RunningServer[]> {
  const nodes: RunningServer[] = []
  for (let i = 0; i < count; i++) {
    nodes.push(await startMles({ messagesPerSecond: 0, perIpLimit: 0, ...options, redis: { cluster: cluster.urls, keyPrefix: prefix, leaseTtlMs: 900, connectTimeoutMs: 300 } }))
  }
  return nodes
}

/** The master (its port) that serves `key`'s slot. */
async function masterOf (key: string): Promise<number> {
  const slot = await client.cluster('KEYSLOT', key) as number
  const ranges = await client.cluster('SLOTS') as unknown as Array<[number, number, [string, number]]>
  const range = ranges.find(([low, high]) => slot >= low && slot <= high)
  assert.ok(range !== undefined, `slot ${slot} is served`)
  return range[2][1]
}

/** Each publisher's frames (`uid#n`) exactly once and in order, 1..count. */
function assertEveryFrameOnce (texts: string[], publisher: string, count: number, what: string): void {
  const numbers = texts.filter((text) => text.startsWith(publisher + '#')).map((text) => Number(text.slice(publisher.length + 1)))
  assert.deepEqual(numbers, Array.from({ length: count }, (_, i) => i + 1), `${what}: ${publisher}'s frames once each, in order`)
}

function dataFrames (texts: string[]): string[] {
  return texts.filter((text) => !text.startsWith('{'))
}

describe('Redis engine on a Redis Cluster', () => {
  test('two nodes: channels spread over every master, frames once and in order, history, members and uids cluster-wide', { timeout: 60_000 }, async () => {
    const prefix = `rc${++prefixSerial}:`
    const nodes = await startNodes(2, prefix, { historyLimit: 30 })
    const clients: TestClient[] = []
    try {
      const channels = Array.from({ length: 9 }, (_, i) => `room-${i}`)
      channels.push('odd}name{')
      const masters = new Set(await Promise.all(channels.map(async (channel) => await masterOf(`${prefix}{${channel}}h:${channel}`))))
      assert.equal(masters.size, 3, 'the channels live on all three masters')

      const pairs: Array<{ channel: string, a: TestClient, b: TestClient }> = []
      for (const channel of channels) {
        const a = await TestClient.join(nodes[0].url, { uid: 'a', channel })
        await waitFor(() => nodes[0].app.mles.history(channel).length === 1, 'a\'s join in Redis')
        const b = await TestClient.join(nodes[1].url, { uid: 'b', channel })
        clients.push(a, b)
        assert.equal(JSON.parse((await b.next()).text).uid, 'a', 'b replays a\'s join from Redis')
        await waitFor(() => nodes[0].app.mles.history(channel).length === 2, 'b\'s join in Redis')
        pairs.push({ channel, a, b })
      }
      for (let i = 1; i <= 20; i++) {
        for (const { a, b } of pairs) {
          a.send(`a#${i}`)
          b.send(`b#${i}`)
        }
      }
      for (const { channel, a, b } of pairs) {
        assertEveryFrameOnce(await a.texts(20, 10_000), 'b', 20, `${channel} on node A`)
        assertEveryFrameOnce(await b.texts(20, 10_000), 'a', 20, `${channel} on node B`)
      }
      await sleep(100)
      for (const { a, b } of pairs) {
        await a.expectSilence(0)
        await b.expectSilence(0)
      }

      // The keys of a channel share a slot: its stream is where the hash tag says, on one master.
      const tagged = 'odd}name{'
      const hashed = (await Promise.all(client.nodes('master').map(async (node) => await node.keys(`${prefix}{#*}h:*`)))).flat()
      assert.equal(hashed.length, 1, 'a channel with "}" in its name is tagged with a hash')
      assert.ok(hashed[0].endsWith('h:' + tagged))
      assert.equal(await client.exists(`${prefix}{room-0}h:room-0`), 1)
      assert.equal(await client.xlen(`${prefix}{room-0}h:room-0`), 42)

      // A new joiner on either node replays the same history; a third node reads it from the cluster.
      const late = await startNodes(1, prefix, { historyLimit: 30 })
      nodes.push(...late)
      for (const [i, node] of nodes.entries()) {
        // Each joiner's own join frame is history for the next one.
        await waitFor(() => nodes[0].app.mles.history('room-4').filter((frame) => frame.data.toString().includes('"late"')).length === i, 'the earlier joins placed')
        const reference = nodes[0].app.mles.history('room-4').map((frame) => frame.data.toString())
        assert.equal(reference.length, 30)
        const joiner = await TestClient.join(node.url, { uid: 'late', channel: 'room-4' })
        assert.deepEqual(await joiner.texts(30), reference, `the replay on ${node.url}`)
        assert.deepEqual(await node.app.mles.members('room-4'), ['a', 'b', 'late'])
        joiner.close()
        await joiner.closed
        for (let i = 0; i < 50 && (await node.app.mles.members('room-4')).length > 2; i++) await sleep(20)
      }

      // A uid held on one node is refused on the others.
      const twin = await TestClient.join(nodes[2].url, { uid: 'a', channel: 'room-7' })
      assert.deepEqual(await twin.closed, { code: 1008, reason: 'uid already joined on this channel' })

      for (const node of nodes) assert.equal(node.app.mles.metrics().cluster_errors, 0, 'no Redis command failed')
    } finally {
      for (const each of clients) each.close()
      await Promise.all(nodes.map(async (node) => { await node.app.close() }))
    }
  })

  test('a master restarted empty mid-run: no frame lost, duplicated or reordered, and its channels\' history comes back from the nodes\' memory', { timeout: 90_000 }, async () => {
    const prefix = `rc${++prefixSerial}:`
    const historyLimit = 50
    const nodes = await startNodes(2, prefix, { historyLimit })
    const clients: TestClient[] = []
    try {
      const channels = Array.from({ length: 6 }, (_, i) => `busy-${i}`)
      const masterPorts = await Promise.all(channels.map(async (channel) => await masterOf(`${prefix}{${channel}}h:${channel}`)))
      const restarted = cluster.masters.find((master) => master.port === masterPorts[0])
      assert.ok(restarted !== undefined)
      const onRestarted = channels.filter((_, i) => masterPorts[i] === restarted.port)
      assert.ok(onRestarted.length < channels.length, 'some channels live on other masters')

      const pairs: Array<{ channel: string, a: TestClient, b: TestClient, receivedA: string[], receivedB: string[] }> = []
      for (const channel of channels) {
        const a = await TestClient.join(nodes[0].url, { uid: 'a', channel })
        await waitFor(() => nodes[0].app.mles.history(channel).length === 1, 'a\'s join in Redis')
        const b = await TestClient.join(nodes[1].url, { uid: 'b', channel })
        clients.push(a, b)
        await b.next()
        await waitFor(() => nodes[0].app.mles.history(channel).length === 2, 'b\'s join in Redis')
        const pair = { channel, a, b, receivedA: [] as string[], receivedB: [] as string[] }
        a.ws.on('message', (data) => { pair.receivedA.push(data.toString()) })
        b.ws.on('message', (data) => { pair.receivedB.push(data.toString()) })
        pairs.push(pair)
      }
      let sent = 0
      const publish = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i++) {
          sent++
          for (const { a, b } of pairs) {
            a.send(`a#${sent}`)
            b.send(`b#${sent}`)
          }
          await sleep(20)
        }
      }
      await publish(30)
      await waitFor(() => pairs.every((pair) => pair.receivedA.length === 30 && pair.receivedB.length === 30), 'the frames before the restart', 10_000)

      await restarted.stop()
      await publish(5)
      await sleep(1000)
      await restarted.start()
      await publish(5)
      await waitFor(() => pairs.every((pair) => pair.receivedA.length === sent && pair.receivedB.length === sent), 'every frame on both nodes', 30_000)
      await sleep(300)
      for (const { channel, receivedA, receivedB } of pairs) {
        assertEveryFrameOnce(receivedA, 'b', sent, `${channel} on node A`)
        assertEveryFrameOnce(receivedB, 'a', sent, `${channel} on node B`)
      }
      for (const node of nodes) assert.equal(node.app.mles.metrics().cluster_dropped_frames, 0)
      const restoredChannels = nodes[0].app.mles.metrics().cluster_restored_channels + nodes[1].app.mles.metrics().cluster_restored_channels
      assert.ok(restoredChannels >= onRestarted.length, `the channels of the restarted master were restored (${restoredChannels} of ${onRestarted.length})`)

      // A node that starts now knows only the cluster: its joiners replay the full history, the restored part included.
      const [late] = await startNodes(1, prefix, { historyLimit })
      nodes.push(late)
      for (const channel of channels) {
        const joiner = await TestClient.join(late.url, { uid: 'late', channel })
        clients.push(joiner)
        const replay = dataFrames(await joiner.texts(historyLimit, 5000))
        assert.equal(replay.length, historyLimit, `${channel}: a full history`)
        const first = Number(replay[0].slice(2)) - 1
        const tail = (publisher: string): number[] => replay.filter((text) => text.startsWith(publisher)).map((text) => Number(text.slice(2)))
        for (const publisher of ['a#', 'b#']) {
          const numbers = tail(publisher)
          assert.equal(numbers.at(-1), sent, `${channel}: ${publisher}'s last frame is there`)
          for (let i = 1; i < numbers.length; i++) assert.equal(numbers[i], numbers[i - 1] + 1, `${channel}: ${publisher}'s frames once each, in order (${numbers.join(',')})`)
        }
        assert.ok(first < sent - 10, `${channel}: the history reaches back before the restart`)
        await joiner.expectSilence(100)
      }
    } finally {
      for (const each of clients) each.close()
      await Promise.all(nodes.map(async (node) => { await node.app.close() }))
    }
  })

  test('mles --workers 2 --redis-cluster: both workers share one channel space through the cluster', { timeout: 60_000 }, async () => {
    const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
    const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--workers', '2', '--redis-cluster', cluster.urls.join(','), '--per-ip-limit', '0'], { MLES_LOG_LEVEL: 'warn' })
    const clients: MlesClient[] = []
    try {
      const match = await cli.waitFor(/serving http:\/\/localhost:(\d+)\/.* with 2 workers/, 30_000)
      const url = `ws://127.0.0.1:${match[1]}/`
      const received = Array.from({ length: 4 }, () => [] as string[])
      for (let i = 0; i < 4; i++) {
        const client = new MlesClient(url, { uid: `u${i}`, channel: 'cli-cluster' })
        client.on('message', (message) => { received[i].push(String(message.data)) })
        clients.push(client)
      }
      await waitFor(() => clients.every((client) => client.state === 'open'), 'clients open', 10_000)
      await sleep(300)
      clients.forEach((client, i) => { client.send(`hello from u${i}`) })
      await waitFor(() => received.every((texts, i) => clients.every((_, j) => j === i || texts.includes(`hello from u${j}`))), 'every client hears every other', 10_000)
      const list = (await Promise.all(client.nodes('master').map(async (node) => await node.client('LIST') as string))).join('\n')
      assert.equal(new Set([...list.matchAll(/name=mles:([0-9a-f-]+)/g)].map((found) => found[1])).size, 2, 'two nodes (the workers) on the cluster')
      assert.equal(await client.exists('mles:{cli-cluster}h:cli-cluster'), 1)
    } finally {
      for (const each of clients) each.close()
      cli.child.kill('SIGTERM')
      assert.equal(await cli.exited, 0, cli.stderr())
    }
  })

  test('the per-IP limit counts in the cluster: two nodes share one limit per address', { timeout: 30_000 }, async () => {
    const prefix = `rc${++prefixSerial}:`
    const nodes = await startNodes(2, prefix, { perIpLimit: 3, perIpWindowMs: 60_000 })
    const clients: TestClient[] = []
    try {
      clients.push(await TestClient.connect(nodes[0].url), await TestClient.connect(nodes[1].url), await TestClient.connect(nodes[0].url))
      for (const node of [nodes[1], nodes[0]]) assert.equal((await refusedUpgrade(node.url)).status, 429)
      assert.equal(nodes[0].app.mles.metrics().dropped_by_ip + nodes[1].app.mles.metrics().dropped_by_ip, 2)
      assert.equal(await client.get(`${prefix}per-ip:GET/-127.0.0.1`), '5')
    } finally {
      for (const each of clients) each.close()
      await Promise.all(nodes.map(async (node) => { await node.app.close() }))
    }
  })
})
