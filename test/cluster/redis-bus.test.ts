import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { TestClient } from '../helpers/client.js'
import { redisForTests, startRedis } from '../helpers/redis.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import type { MlesOptions } from '../../src/index.js'

const redis = redisForTests()
let prefixSerial = 0

/** Starts `count` nodes sharing a fresh key prefix, so tests never see each other's channels. */
async function startNodes (count: number, options: MlesOptions = {}): Promise<{ nodes: RunningServer[], prefix: string, close: () => Promise<void> }> {
  const prefix = `t${++prefixSerial}:`
  const nodes: RunningServer[] = []
  for (let i = 0; i < count; i++) {
    nodes.push(await startMles({ messagesPerSecond: 0, perIpLimit: 0, ...options, redis: { url: redis.url, keyPrefix: prefix, leaseTtlMs: 3000 } }))
  }
  return { nodes, prefix, close: async () => { await Promise.all(nodes.map(async (node) => { await node.app.close() })) } }
}

/** The id of the node that registered last as holding a channel: the one not among `known`. */
async function newlyRegistered (registry: string, known: string[]): Promise<string> {
  for (let i = 0; i < 300; i++) {
    const added = (await redis.inspector.hkeys(registry)).filter((id) => !known.includes(id))
    if (added.length === 1) return added[0]
    await sleep(10)
  }
  throw new Error(`timed out waiting for one more node in ${registry}`)
}

/** Joins and reads the history replay: `expected` frames. */
async function join (node: RunningServer, uid: string, channel: string): Promise<TestClient> {
  return await TestClient.join(node.url, { uid, channel })
}

async function collect (client: TestClient, count: number, timeoutMs = 5000): Promise<string[]> {
  const texts: string[] = []
  for (let i = 0; i < count; i++) texts.push((await client.next(timeoutMs)).text)
  return texts
}

/** No two members of a channel may see a frame twice, and each publisher's frames come in the order sent. */
function assertPerPublisherOrder (texts: string[], what: string): Map<string, number[]> {
  const byPublisher = new Map<string, number[]>()
  for (const text of texts) {
    const match = /^(\w+)#(\d+)$/.exec(text)
    if (match === null) continue
    const list = byPublisher.get(match[1]) ?? []
    list.push(Number(match[2]))
    byPublisher.set(match[1], list)
  }
  for (const [publisher, numbers] of byPublisher) {
    for (let i = 1; i < numbers.length; i++) {
      assert.equal(numbers[i], numbers[i - 1] + 1, `${what}: frames of ${publisher} out of order, duplicated or missing around #${numbers[i - 1]}`)
    }
  }
  return byPublisher
}

describe('Redis engine: one channel space over several nodes', () => {
  test('a frame published on one node reaches members on every other node exactly once, in order', async () => {
    const { nodes, close } = await startNodes(3)
    try {
      const members: TestClient[] = []
      for (const [i, uid] of ['a', 'b', 'c'].entries()) {
        members.push(await join(nodes[i], uid, 'room'))
        // Each sees the join frames of those before it, once they are in Redis.
        assert.equal((await collect(members[i], i)).length, i)
        await waitFor(() => nodes[i].app.mles.history('room').length === i + 1, `${uid}'s join in Redis`)
      }
      for (const node of nodes) await waitForMembers(node.app, 'room', 1)
      const perPublisher = 200
      for (let n = 0; n < perPublisher; n++) {
        members.forEach((member, i) => { member.send(`${'abc'[i]}#${n}`) })
      }
      for (let i = 0; i < members.length; i++) {
        const texts = await collect(members[i], 2 * perPublisher)
        const byPublisher = assertPerPublisherOrder(texts, `member ${'abc'[i]}`)
        assert.equal(byPublisher.has('abc'[i]), false, 'a member never gets its own frames back')
        for (const [publisher, numbers] of byPublisher) assert.equal(numbers.length, perPublisher, `all of ${publisher}'s frames`)
      }
      await sleep(100)
      for (const member of members) assert.equal(member.pending, 0, 'nothing more than that')
    } finally {
      await close()
    }
  })

  test('joiners on any node get the same history and then every live frame, with no gap or duplicate while publishing goes on', async () => {
    const { nodes, close } = await startNodes(3, { historyLimit: 100_000 })
    try {
      const p0 = await join(nodes[0], 'p0', 'busy')
      await waitFor(() => nodes[0].app.mles.history('busy').length === 1, 'p0\'s join in Redis')
      const publishers = [p0, await join(nodes[1], 'p1', 'busy')]
      await collect(publishers[1], 1)
      let sent = 0
      let publishing = true
      const publishing$ = (async () => {
        while (publishing) {
          for (let burst = 0; burst < 5; burst++) {
            publishers[0].send(`p0#${sent}`)
            publishers[1].send(`p1#${sent}`)
            sent++
          }
          await sleep(1)
        }
      })()
      const joiners: Array<{ client: TestClient, texts: string[] }> = []
      for (let i = 0; i < 12; i++) {
        const client = await join(nodes[i % 3], `j${i}`, 'busy')
        const entry = { client, texts: [] as string[] }
        client.ws.on('message', (data) => { entry.texts.push(data.toString()) })
        joiners.push(entry)
        await sleep(10 + (i % 4) * 7)
      }
      await sleep(50)
      publishing = false
      await publishing$
      const total = sent
      for (const [i, { texts }] of joiners.entries()) {
        await waitFor(() => texts.filter((text) => text.startsWith('p')).length >= 2 * total, `joiner ${i} to have all ${2 * total} frames (has ${texts.filter((text) => text.startsWith('p')).length})`, 10_000)
        const byPublisher = assertPerPublisherOrder(texts, `joiner ${i} on node ${i % 3}`)
        for (const publisher of ['p0', 'p1']) {
          const numbers = byPublisher.get(publisher) ?? []
          assert.equal(numbers[0], 0, `joiner ${i} starts ${publisher} at #0 (history)`)
          assert.equal(numbers.length, total, `joiner ${i} has each of ${publisher}'s ${total} frames once`)
        }
      }
      // The same replay on every node.
      const replays: string[][] = []
      for (const [i, node] of nodes.entries()) {
        // A join reaches the other nodes through Redis a moment after its joiner has its replay: let the last one land everywhere.
        const settledLength = 2 + 12 + 2 * total + i
        await waitFor(() => nodes.every((each) => each.app.mles.history('busy').length === settledLength), 'every node to hold the same history')
        const late = await join(node, `late${i}`, 'busy')
        const count = 2 + 12 + 2 * total + i
        const texts: string[] = []
        try {
          for (let k = 0; k < count; k++) texts.push((await late.next(5000)).text)
        } catch (error) {
          const dataFrames = texts.filter((text) => text.startsWith('p'))
          throw new Error(`late joiner on node ${i} got ${texts.length} of ${count} frames (${dataFrames.length} data, ${texts.length - dataFrames.length} joins; total ${total}): ${(error as Error).message}`)
        }
        replays.push(texts.slice(0, count - i))
        late.ws.close()
      }
      assert.deepEqual(replays[1], replays[0])
      assert.deepEqual(replays[2], replays[0])
    } finally {
      await close()
    }
  })

  test('a uid is taken cluster-wide, and free again once its connection leaves', async () => {
    const { nodes, close } = await startNodes(2)
    try {
      const first = await join(nodes[0], 'alice', 'uids')
      await waitForMembers(nodes[0].app, 'uids', 1)
      const second = await join(nodes[1], 'alice', 'uids')
      assert.deepEqual(await second.closed, { code: 1008, reason: 'uid already joined on this channel' })
      assert.equal(nodes[1].app.mles.metrics().rejected_duplicates, 1)
      const elsewhere = await join(nodes[1], 'alice', 'other-channel')
      await waitForMembers(nodes[1].app, 'other-channel', 1)
      first.ws.close()
      await first.closed
      await waitFor(() => nodes[0].app.mles.channels().length === 0, 'node 0 to forget the channel')
      const third = await join(nodes[1], 'alice', 'uids')
      await waitForMembers(nodes[1].app, 'uids', 1)
      third.ws.close()
      elsewhere.ws.close()
    } finally {
      await close()
    }
  })

  test('a node subscribes and registers in Redis only for channels with local members or subscribers', async () => {
    const { nodes, prefix, close } = await startNodes(2)
    // Each node listens on a topic of its own, and is named in the channel's registry while it holds it.
    const subscribers = async (channel: string): Promise<number> => {
      const topics = await redis.inspector.pubsub('CHANNELS', `${prefix}n:${channel}:*`) as string[]
      const registered = await redis.inspector.hlen(`${prefix}r:${channel}`)
      assert.equal(registered, topics.length, 'registered as many times as subscribed')
      return topics.length
    }
    try {
      const a = await join(nodes[0], 'a', 'only-on-0')
      await waitForMembers(nodes[0].app, 'only-on-0', 1)
      assert.equal(await subscribers('only-on-0'), 1)
      assert.deepEqual(nodes[1].app.mles.channels(), [])
      const unsubscribe = nodes[1].app.mles.subscribe('only-on-0', () => {})
      await sleep(100)
      assert.equal(await subscribers('only-on-0'), 2)
      unsubscribe()
      a.ws.close()
      await a.closed
      await sleep(100)
      assert.equal(await subscribers('only-on-0'), 0)
      assert.deepEqual(nodes[0].app.mles.channels(), [])
      assert.equal(nodes[0].app.mles.metrics().history_bytes, 0, 'a channel let go gives its history back to the budget')
    } finally {
      await close()
    }
  })

  test('a frame is announced only to the other nodes holding its channel: a node alone in it publishes nothing, and none gets its own back', async () => {
    const { nodes, prefix, close } = await startNodes(2)
    const listener = redis.inspector.duplicate()
    const announced: string[] = []
    listener.on('pmessage', (_pattern: string, topic: string) => { announced.push(topic) })
    try {
      await listener.psubscribe(`${prefix}n:*`)
      const alone = await join(nodes[0], 'alone', 'solo')
      const first = await newlyRegistered(`${prefix}r:solo`, [])
      const watcher = await join(nodes[0], 'watcher', 'solo')
      for (let n = 0; n < 50; n++) alone.send(`alone#${n}`)
      assert.equal((await collect(watcher, 50)).length, 50)
      await waitFor(() => nodes[0].app.mles.history('solo').length === 52, 'all 50 in the history, after both joins')
      assert.deepEqual(announced, [], 'no notice while one node holds the channel')
      const remote = await join(nodes[1], 'remote', 'solo')
      const second = await newlyRegistered(`${prefix}r:solo`, [first])
      assert.equal((await collect(remote, 52)).length, 52, 'the replay, from the stream')
      for (let n = 50; n < 100; n++) alone.send(`alone#${n}`)
      assert.deepEqual(await collect(remote, 50), Array.from({ length: 50 }, (_, k) => `alone#${50 + k}`))
      await waitFor(() => announced.length === 51, 'the join of remote and 50 frames announced', 2000).catch(() => {})
      assert.equal(announced.length, 51)
      assert.equal(announced[0], `${prefix}n:solo:${first}`, 'the join on node 1 went to node 0 only')
      assert.deepEqual(new Set(announced.slice(1)), new Set([`${prefix}n:solo:${second}`]), 'each frame of node 0 went to node 1 only, once')
      for (const client of [alone, watcher, remote]) client.close()
    } finally {
      listener.disconnect()
      await close()
    }
  })

  test('a registration Redis lost is noticed at the next renewal: the node reads what it was not told of, once, in order', async () => {
    const { nodes, prefix, close } = await startNodes(2)
    try {
      const sender = await join(nodes[0], 'sender', 'lapse')
      const first = await newlyRegistered(`${prefix}r:lapse`, [])
      const receiver = await join(nodes[1], 'receiver', 'lapse')
      const second = await newlyRegistered(`${prefix}r:lapse`, [first])
      await collect(receiver, 1)
      await redis.inspector.hdel(`${prefix}r:lapse`, second)
      for (let n = 0; n < 5; n++) sender.send(`sender#${n}`)
      // Renewed every leaseTtlMs / 3 = 1 s.
      assert.deepEqual(await collect(receiver, 5, 5000), ['sender#0', 'sender#1', 'sender#2', 'sender#3', 'sender#4'])
      sender.send('sender#5')
      assert.deepEqual(await collect(receiver, 1), ['sender#5'], 'announced again')
      await sleep(200)
      assert.equal(receiver.pending, 0)
      sender.close()
      receiver.close()
    } finally {
      await close()
    }
  })

  test('an entry whose predecessor was never announced here makes the node read the stream: the missing frames come first, nothing twice', async () => {
    const prefix = `t${++prefixSerial}:`
    // Renewals far apart, so that only the missing link can tell node 1 what it missed.
    const options: MlesOptions = { messagesPerSecond: 0, perIpLimit: 0, redis: { url: redis.url, keyPrefix: prefix, leaseTtlMs: 60_000 } }
    const nodes = [await startMles(options), await startMles(options)]
    try {
      const registry = `${prefix}r:chain`
      const sender = await join(nodes[0], 'sender', 'chain')
      const first = await newlyRegistered(registry, [])
      const receiver = await join(nodes[1], 'receiver', 'chain')
      const second = await newlyRegistered(registry, [first])
      await collect(receiver, 1)
      const registration = await redis.inspector.hget(registry, second)
      assert.ok(registration !== null)
      await redis.inspector.hdel(registry, second)
      const length = await redis.inspector.xlen(`${prefix}h:chain`)
      for (let n = 0; n < 3; n++) sender.send(`sender#${n}`)
      for (let i = 0; i < 300 && await redis.inspector.xlen(`${prefix}h:chain`) < length + 3; i++) await sleep(10)
      assert.equal(await redis.inspector.xlen(`${prefix}h:chain`), length + 3, 'written, announced to nobody')
      await receiver.expectSilence(100)
      await redis.inspector.hset(registry, second, registration)
      sender.send('sender#3')
      assert.deepEqual(await collect(receiver, 4), ['sender#0', 'sender#1', 'sender#2', 'sender#3'])
      assert.equal(nodes[1].app.mles.metrics().cluster_gap_reads, 1)
      assert.deepEqual(nodes[1].app.mles.history('chain').map((frame) => frame.data.toString()).filter((text) => !text.startsWith('{')), ['sender#0', 'sender#1', 'sender#2', 'sender#3'])
      await receiver.expectSilence(200)
      sender.close()
      receiver.close()
    } finally {
      await Promise.all(nodes.map(async (node) => { await node.app.close() }))
    }
  })

  test('a node reading a history from Redis gets every frame of ours, spaces and any bytes intact, and leaves out entries another writer put in the stream', async () => {
    const { nodes, prefix, close } = await startNodes(2)
    try {
      const sender = await join(nodes[0], 'sender', 'packed')
      const binary = Buffer.from([0x20, 0x31, 0x20, 0x00, 0xff, 0x0a])
      sender.send('one two 3 ')
      const stream = `${prefix}h:packed`
      for (let i = 0; i < 300 && await redis.inspector.xlen(stream) < 2; i++) await sleep(10)
      await redis.inspector.xadd(stream, '*', 'x', 'not a frame')
      sender.send(binary, true)
      for (let i = 0; i < 300 && await redis.inspector.xlen(stream) < 4; i++) await sleep(10)
      assert.equal(await redis.inspector.xlen(stream), 4, 'the join, two frames and the foreign entry')
      const late = await join(nodes[1], 'late', 'packed')
      const replay = [await late.next(), await late.next(), await late.next()]
      assert.deepEqual(replay.map((frame) => frame.isBinary ? frame.data.toString('hex') : frame.text), ['{"uid":"sender","channel":"packed"}', 'one two 3 ', binary.toString('hex')])
      await late.expectSilence(200)
      sender.close()
      late.close()
    } finally {
      await close()
    }
  })

  test('a client that sends its join and frames and closes at once (a fire-and-forget publisher) still reaches the channel: it joined and left', async () => {
    const { nodes, close } = await startNodes(2)
    try {
      const listener = await join(nodes[1], 'listener', 'readings')
      await waitForMembers(nodes[1].app, 'readings', 1)
      for (let k = 0; k < 5; k++) {
        // Node 0 does not hold the channel yet on the first round: its join takes a lease and the channel's first read.
        const device = await TestClient.connect(nodes[0].url)
        device.send(JSON.stringify({ uid: `device${k}`, channel: 'readings' }))
        device.send(`reading ${k}.1`)
        device.send(`reading ${k}.2`)
        device.ws.terminate()
        assert.deepEqual(await collect(listener, 2), [`reading ${k}.1`, `reading ${k}.2`])
      }
      await waitFor(() => nodes[0].app.mles.channels().every((channel) => channel.members === 0), 'the devices gone from node 0')
      const history = nodes[1].app.mles.history('readings').map((frame) => frame.data.toString())
      assert.equal(history.filter((text) => text.startsWith('reading')).length, 10, 'all in the history')
      assert.equal(history.filter((text) => text.includes('"uid":"device')).length, 5, 'with each device\'s join')
      assert.deepEqual(await nodes[1].app.mles.members('readings'), ['listener'], 'and no device holds its uid any more')
      await listener.expectSilence(200)
      listener.close()
    } finally {
      await close()
    }
  })

  test('server-side publish and subscribe span the nodes, with the sender\'s uid', async () => {
    const { nodes, close } = await startNodes(2)
    try {
      const seen: Array<{ uid: string | null, text: string, join: boolean }> = []
      nodes[1].app.mles.subscribe('feed', (frame) => { seen.push({ uid: frame.uid, text: frame.data.toString(), join: frame.join }) })
      await sleep(50)
      const member = await join(nodes[0], 'm', 'feed')
      await waitForMembers(nodes[0].app, 'feed', 1)
      member.send('from a member')
      await waitFor(() => seen.length === 2, 'the member\'s frame on the other node')
      nodes[0].app.mles.publish('feed', 'from the server')
      assert.equal((await member.next()).text, 'from the server')
      await waitFor(() => seen.length === 3, 'three frames on the other node')
      assert.deepEqual(seen, [
        { uid: 'm', text: '{"uid":"m","channel":"feed"}', join: true },
        { uid: 'm', text: 'from a member', join: false },
        { uid: null, text: 'from the server', join: false }
      ])
      assert.equal(nodes[1].app.mles.history('feed').length, 3)
    } finally {
      await close()
    }
  })

  test('history in Redis is trimmed and an idle channel expires', async () => {
    const { nodes, prefix, close } = await startNodes(1, { historyLimit: 3, channelIdleMs: 400 })
    try {
      const member = await join(nodes[0], 'm', 'brief')
      await waitForMembers(nodes[0].app, 'brief', 1)
      for (let i = 0; i < 10; i++) member.send(`m#${i}`)
      await sleep(100)
      const ttl = await redis.inspector.pttl(`${prefix}h:brief`)
      assert.ok(ttl > 0 && ttl <= 400, `the stream expires (pttl ${ttl})`)
      const late = await join(nodes[0], 'late', 'brief')
      assert.deepEqual(await collect(late, 3), ['m#7', 'm#8', 'm#9'])
      member.ws.close()
      late.ws.close()
      await sleep(600)
      assert.equal(await redis.inspector.exists(`${prefix}h:brief`), 0)
      const fresh = await join(nodes[0], 'fresh', 'brief')
      await waitForMembers(nodes[0].app, 'brief', 1)
      await sleep(100)
      assert.equal(fresh.pending, 0, 'no history after expiry')
      fresh.ws.close()
    } finally {
      await close()
    }
  })
})

describe('Redis engine: outages', () => {
  test('nodes keep serving their members while Redis is down, count the fault, send what waited once it is back, and resume cross-node delivery', async () => {
    const own = await startRedis()
    const options: MlesOptions = { messagesPerSecond: 0, redis: { url: own.url, leaseTtlMs: 600 } }
    const nodeA = await startMles(options)
    const nodeB = await startMles(options)
    try {
      const a1 = await join(nodeA, 'a1', 'room')
      const a2 = await join(nodeA, 'a2', 'room')
      // Joins on different nodes are concurrent: b1's history has both only once they are in Redis.
      await waitFor(() => nodeA.app.mles.history('room').length === 2, 'both joins in the history')
      const b1 = await join(nodeB, 'b1', 'room')
      await collect(a2, 1)
      await collect(b1, 2)
      a1.send('before')
      assert.equal((await a2.next()).text, 'before')
      assert.equal((await b1.next()).text, 'before')

      await own.stop()
      await waitFor(() => nodeA.app.mles.metrics().cluster_outages === 1, 'node A to notice the outage')
      for (let i = 0; i < 50; i++) a1.send(`a1#${i}`)
      assert.deepEqual(await collect(a2, 50), Array.from({ length: 50 }, (_, i) => `a1#${i}`), 'local delivery goes on')
      assert.equal(nodeA.app.mles.metrics().cluster_unsent_frames, 50)
      // A join while Redis is away is served locally, with the local history.
      const a3 = await join(nodeA, 'a3', 'room')
      const replay = await collect(a3, 4)
      assert.equal(replay[3], 'before')

      await own.restart()
      // What was published during the outage reaches the other node late rather than never: in order, once each.
      assert.deepEqual(await collect(b1, 50, 15_000), Array.from({ length: 50 }, (_, i) => `a1#${i}`))
      a1.send('after the outage')
      assert.equal((await b1.next()).text, 'after the outage')
      await b1.expectSilence(300)
      assert.equal(nodeA.app.mles.metrics().cluster_dropped_frames, 0)
      assert.equal((await a2.texts(1))[0], 'after the outage', 'node A members got each outage frame once, when it was sent')
      b1.send('b1 is back')
      let heard = ''
      while (heard !== 'b1 is back') heard = (await a1.next(5000)).text
      assert.ok(process.memoryUsage().heapUsed < 512 * 1024 * 1024)
    } finally {
      await Promise.all([nodeA.app.close(), nodeB.app.close()])
      await own.cleanup()
    }
  })

  test('a Redis that hangs without closing holds nothing up for long: members talk, joins go on locally', async () => {
    const own = await startRedis()
    const node = await startMles({ messagesPerSecond: 0, redis: { url: own.url, connectTimeoutMs: 1000 } })
    try {
      const first = await join(node, 'first', 'frozen')
      const second = await join(node, 'second', 'frozen')
      await collect(second, 1)
      own.pause()
      first.send('while frozen')
      assert.equal((await second.next()).text, 'while frozen')
      const third = await join(node, 'third', 'frozen')
      const replay = await collect(third, 2, 5000)
      assert.deepEqual(replay, ['{"uid":"first","channel":"frozen"}', '{"uid":"second","channel":"frozen"}'])
      third.send('third is in')
      assert.equal((await first.next()).text, 'third is in')
      assert.ok(node.app.mles.metrics().cluster_errors > 0)
      own.resume()
    } finally {
      own.resume()
      await node.app.close()
      await own.cleanup()
    }
  })

  test('registering fails with a clear error when Redis cannot be reached', async () => {
    await assert.rejects(startMles({ redis: { url: 'redis://127.0.0.1:1', connectTimeoutMs: 500 } }), /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/)
  })
})
