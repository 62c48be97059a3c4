import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { startSentinelSet } from '../helpers/redis-sentinel.js'
import { sleep, startMles, waitFor, type RunningServer } from '../helpers/server.js'

// The Redis engine through Redis Sentinel (issue 14, point 3): a master, a replica and one
// Sentinel, real redis-server processes; a failover while two nodes publish.

/** `texts` hold each of `publisher`'s frames (`publisher#n`) at most once, in increasing order; returns the numbers. */
function inOrderOnce (texts: string[], publisher: string, what: string): number[] {
  const numbers = texts.filter((text) => /^\w+#\d+$/.test(text) && text.startsWith(publisher + '#')).map((text) => Number(text.slice(publisher.length + 1)))
  for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i] > numbers[i - 1], `${what}: ${publisher}'s frames once each, in order (${numbers[i - 1]} then ${numbers[i]})`)
  return numbers
}

test('two nodes through Redis Sentinel: frames, history and uids cluster-wide, and they go on through a failover to the replica', { timeout: 90_000 }, async () => {
  const set = await startSentinelSet()
  const nodes: RunningServer[] = []
  const clients: TestClient[] = []
  try {
    for (let i = 0; i < 2; i++) {
      nodes.push(await startMles({ historyLimit: 50, messagesPerSecond: 0, perIpLimit: 0, redis: { sentinels: [set.sentinelUrl], masterName: set.masterName, leaseTtlMs: 900, connectTimeoutMs: 500 } }))
    }
    const [a, b] = nodes
    const alice = await TestClient.join(a.url, { uid: 'alice', channel: 'room' })
    clients.push(alice)
    await waitFor(() => a.app.mles.history('room').length === 1, 'alice\'s join in the history')
    const bob = await TestClient.join(b.url, { uid: 'bob', channel: 'room' })
    clients.push(bob)
    await bob.texts(1) // alice's join frame, from the history in Redis
    const twin = await TestClient.join(b.url, { uid: 'alice', channel: 'room' })
    assert.deepEqual(await twin.closed, { code: 1008, reason: 'uid already joined on this channel' }, 'a uid held on the other node is refused')
    alice.send('alice#1')
    assert.equal((await bob.next()).text, 'alice#1')
    bob.send('bob#1')
    assert.equal((await alice.next()).text, 'bob#1')

    // Both publish throughout the failover.
    let publishing = true
    let sentA = 1
    let sentB = 1
    const talk = async (): Promise<void> => {
      while (publishing) {
        alice.send(`alice#${++sentA}`)
        bob.send(`bob#${++sentB}`)
        await sleep(20)
      }
    }
    const talking = talk()
    await sleep(300)
    const newMaster = await set.failover()
    assert.equal(newMaster, set.replicaPort)
    // The old master refuses writes now (READONLY): the nodes move to the new one.
    await sleep(1500)
    publishing = false
    await talking
    alice.send('alice#last')
    bob.send('bob#last')
    const atBob: string[] = []
    const atAlice: string[] = []
    for (;;) {
      const text = (await bob.next(20_000)).text
      atBob.push(text)
      if (text === 'alice#last') break
    }
    for (;;) {
      const text = (await alice.next(20_000)).text
      atAlice.push(text)
      if (text === 'bob#last') break
    }
    const gotA = inOrderOnce(atBob, 'alice', 'bob')
    const gotB = inOrderOnce(atAlice, 'bob', 'alice')
    // Writes the old master took in its last moments may not have reached the replica (replication
    // is asynchronous): those can be missing; the frames of the last second before the end cannot.
    const recent = Math.floor(1000 / 20)
    for (let n = sentA - recent; n <= sentA; n++) assert.ok(gotA.includes(n), `bob got alice#${n}`)
    for (let n = sentB - recent; n <= sentB; n++) assert.ok(gotB.includes(n), `alice got bob#${n}`)

    // Written to the new master: the last frames are in its stream.
    const stream = await set.client(newMaster).xrevrangeBuffer('mles:h:room', '+', '-', 'COUNT', 5)
    const newest = stream.map(([, fields]) => fields[1].toString('latin1')).join('|')
    assert.ok(newest.includes('alice#last') && newest.includes('bob#last'), 'the new master took the last frames')
    assert.ok(nodes.some((node) => node.app.mles.metrics().cluster_outages > 0), 'a node found its connection gone and came back')

    // The new master holds the channel: a newcomer on either node replays it, and uids are still checked.
    const carol = await TestClient.join(a.url, { uid: 'carol', channel: 'room' })
    clients.push(carol)
    const replay = (await carol.texts(50, 10_000)).filter((text) => !text.startsWith('{'))
    assert.ok(replay.includes('alice#last') && replay.includes('bob#last'), 'the replay holds the newest frames')
    const carolTwin = await TestClient.join(b.url, { uid: 'carol', channel: 'room' })
    assert.deepEqual(await carolTwin.closed, { code: 1008, reason: 'uid already joined on this channel' }, 'uids are still taken cluster-wide after the failover')
    for (const node of nodes) assert.ok(node.app.mles.metrics().cluster_dropped_frames === 0)
  } finally {
    for (const client of clients) client.close()
    await Promise.all(nodes.map(async (node) => { await node.app.close() }))
    await set.cleanup()
  }
})

test('a Sentinel that cannot be reached fails app.register with one clear error naming the master and the Sentinels', async () => {
  await assert.rejects(startMles({ redis: { sentinels: ['redis://127.0.0.1:1'], masterName: 'mymaster', connectTimeoutMs: 300 } }),
    /cannot reach the Redis master "mymaster" of the Sentinels at redis:\/\/127\.0\.0\.1:1/)
})

test('mles --redis-sentinel --redis-master: the command finds the master through the Sentinel and shares its channels with a plugin node', { timeout: 60_000 }, async () => {
  const set = await startSentinelSet('main-db')
  const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--redis-sentinel', set.sentinelUrl, '--redis-master', 'main-db', '--per-ip-limit', '0'], { MLES_LOG_LEVEL: 'warn' })
  let node: RunningServer | undefined
  const clients: TestClient[] = []
  try {
    const match = await cli.waitFor(/serving http:\/\/localhost:(\d+)\//, 30_000)
    node = await startMles({ redis: { sentinels: [set.sentinelUrl], masterName: 'main-db' } })
    const atCli = await TestClient.join(`ws://127.0.0.1:${match[1]}/`, { uid: 'cli-member', channel: 'shared' })
    clients.push(atCli)
    // The command has written the join to the master before the plugin node's member reads the history.
    const master = set.client(set.masterPort)
    for (let i = 0; i < 100 && await master.xlen('mles:h:shared') === 0; i++) await sleep(50)
    const atPlugin = await TestClient.join(node.url, { uid: 'plugin-member', channel: 'shared' })
    clients.push(atPlugin)
    assert.match((await atPlugin.next()).text, /cli-member/, 'the history holds the command\'s member\'s join')
    atCli.send('from the command')
    assert.equal((await atPlugin.next()).text, 'from the command')
    atPlugin.send('from the plugin')
    assert.equal((await atCli.next()).text, 'from the plugin')
    assert.equal(await master.xlen('mles:h:shared'), 4, 'the channel lives on the master: two joins, two frames')
  } finally {
    for (const client of clients) client.close()
    await node?.app.close()
    cli.child.kill('SIGTERM')
    assert.equal(await cli.exited, 0, cli.stderr())
    await set.cleanup()
  }
})
