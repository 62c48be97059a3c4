import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import { V1TestClient } from '../helpers/v1-client.js'
import { encodeFrame } from '../../src/v1/frame.js'
import { cidOfKey, v1Key } from '../../src/v1/key.js'
import { encodeMsg, encodeResync } from '../../src/v1/msg.js'
import { computeAuth, type MlesOptions } from '../../src/index.js'

async function startBridge (options: MlesOptions = {}): Promise<{ server: RunningServer, v1Port: number }> {
  const server = await startMles({ messagesPerSecond: 0, perIpLimit: 0, ...options, v1: { port: 0, host: '127.0.0.1', ...options.v1 } })
  const address = server.app.mles.v1Address()
  assert.ok(address !== null)
  return { server, v1Port: address.port }
}

test('two v1 clients talk through the listener: joins forwarded, frames verbatim, no echo', async () => {
  const { server, v1Port } = await startBridge()
  try {
    const alice = await V1TestClient.join(v1Port, 'alice', 'v1only')
    await waitForMembers(server.app, 'v1only', 1)
    const bob = await V1TestClient.join(v1Port, 'bob', 'v1only')
    const replay = await bob.next()
    assert.deepEqual([replay.msg.uid, replay.text], ['alice', ''], 'bob\'s replay: alice\'s join')
    const joinNotice = await alice.next()
    assert.deepEqual([joinNotice.msg.uid, joinNotice.text], ['bob', ''], 'alice hears of bob\'s join')
    assert.deepEqual(joinNotice.frame.subarray(4, 16), bob.frame('').subarray(4, 16), 'forwarded verbatim (bob\'s CID and key)')
    const hello = alice.frame('hello')
    alice.write(hello)
    const got = await bob.next()
    assert.deepEqual(got.frame, hello, 'the frame arrives byte for byte')
    await sleep(100)
    assert.equal(alice.pending, 0, 'no echo')
    alice.close()
    bob.close()
  } finally {
    await server.app.close()
  }
})

test('v1 and v2 clients share a channel, each seeing the other as its own kind, history included', async () => {
  const { server, v1Port } = await startBridge()
  try {
    const web = await TestClient.join(server.url, { uid: 'web', channel: 'mixed' })
    await waitForMembers(server.app, 'mixed', 1)
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'mixed')
    const webJoin = await tcp.next()
    assert.deepEqual([webJoin.msg.uid, webJoin.msg.channel, webJoin.text], ['web', 'mixed', ''], 'a v2 join replays to v1 as an empty Msg')
    await waitForMembers(server.app, 'mixed', 2)

    web.send('from the web')
    const atTcp = await tcp.next()
    assert.deepEqual([atTcp.msg.uid, atTcp.msg.channel, atTcp.text], ['web', 'mixed', 'from the web'])
    tcp.send('from tcp')
    const atWeb = await web.next()
    assert.equal(atWeb.isBinary, true)
    assert.equal(atWeb.text, 'from tcp')

    // A v2 joiner: the v1 member hears of it as a v1 join.
    const web2 = await TestClient.join(server.url, { uid: 'web2', channel: 'mixed' })
    const notice = await tcp.next()
    assert.deepEqual([notice.msg.uid, notice.text], ['web2', ''])
    const web2Replay = await web2.texts(4)
    assert.deepEqual(web2Replay, ['{"uid":"web","channel":"mixed"}', '{"uid":"tcp","channel":"mixed"}', 'from the web', 'from tcp'])

    // A late v1 joiner gets the whole history as v1 Msgs with their senders.
    const late = await V1TestClient.join(v1Port, 'late', 'mixed')
    const lateReplay = []
    for (let i = 0; i < 5; i++) {
      const frame = await late.next()
      lateReplay.push(`${frame.msg.uid}:${frame.text}`)
    }
    assert.deepEqual(lateReplay, ['web:', 'tcp:', 'web:from the web', 'tcp:from tcp', 'web2:'])
    assert.equal(server.app.mles.metrics().active_connections, 4)
    tcp.close()
    late.close()
  } finally {
    await server.app.close()
  }
})

test('keys: shared-key mode with MLES_KEY, address mode with MLES_ADDR_KEY; a wrong key closes only that connection', async () => {
  const shared = await startBridge({ key: 'secret' })
  try {
    const good = await V1TestClient.join(shared.v1Port, 'alice', 'keyed', { sharedKey: 'secret' })
    await waitForMembers(shared.server.app, 'keyed', 1)
    const bad = await V1TestClient.join(shared.v1Port, 'mallory', 'keyed', { sharedKey: 'guess' })
    assert.equal(await bad.closedWithin(), true)
    const addressKeyed = await V1TestClient.join(shared.v1Port, 'eve', 'keyed')
    assert.equal(await addressKeyed.closedWithin(), true, 'address mode is off when MLES_KEY is set')
    assert.equal(shared.server.app.mles.metrics().rejected_auth, 2)
    const friend = await V1TestClient.join(shared.v1Port, 'bob', 'keyed', { sharedKey: 'secret' })
    assert.equal((await good.next()).msg.uid, 'bob')
    friend.send('still here')
    assert.equal((await good.next()).text, 'still here')
    good.close()
    friend.close()
  } finally {
    await shared.server.app.close()
  }
  const addressed = await startBridge({ v1: { port: 0, addressKey: 'extra' } })
  try {
    const good = await V1TestClient.join(addressed.v1Port, 'alice', 'addr', { addressKey: 'extra' })
    await waitForMembers(addressed.server.app, 'addr', 1)
    const bad = await V1TestClient.join(addressed.v1Port, 'bob', 'addr')
    assert.equal(await bad.closedWithin(), true)
    good.close()
  } finally {
    await addressed.server.app.close()
  }
})

test('a duplicate CID or a uid already on the channel is refused; the member holding it stays', async () => {
  const { server, v1Port } = await startBridge({ key: 'k' })
  try {
    const first = await V1TestClient.join(v1Port, 'alice', 'dups', { sharedKey: 'k' })
    await waitForMembers(server.app, 'dups', 1)
    const again = await V1TestClient.join(v1Port, 'alice', 'dups', { sharedKey: 'k' })
    assert.equal(await again.closedWithin(), true, 'same key, same CID')
    const web = await TestClient.join(server.url, { uid: 'alice', channel: 'dups', auth: computeAuth('alice', 'dups', 'k') })
    assert.equal((await web.closed).code, 1008, 'a v2 client cannot take a uid a v1 client holds')
    const other = await V1TestClient.join(v1Port, 'bob', 'dups', { sharedKey: 'k' })
    first.send('alive')
    assert.equal((await other.next()).msg.uid, 'alice')
    assert.equal((await other.next()).text, 'alive')
    assert.equal(server.app.mles.metrics().rejected_duplicates, 2)
    first.close()
    other.close()
  } finally {
    await server.app.close()
  }
})

test('a ResyncMsg as first frame joins with its first inner frame and publishes the rest', async () => {
  const { server, v1Port } = await startBridge({ key: 'k' })
  try {
    const web = await TestClient.join(server.url, { uid: 'web', channel: 'resync', auth: computeAuth('web', 'resync', 'k') })
    await waitForMembers(server.app, 'resync', 1)
    const key = v1Key(['k', 'peer', 'resync'])
    const frames = ['', 'one', 'two'].map((message) => encodeFrame(encodeMsg({ uid: 'peer', channel: 'resync', message: Buffer.from(message) }), cidOfKey(key), key))
    const client = await V1TestClient.connect(v1Port, 'peer', 'resync')
    client.write(encodeFrame(encodeResync(frames), cidOfKey(key), key))
    assert.deepEqual(await web.texts(2), ['one', 'two'])
    await waitForMembers(server.app, 'resync', 2)
    assert.deepEqual(server.app.mles.history('resync').map((frame) => frame.data.toString()), ['{"uid":"web","channel":"resync"}', '{"uid":"peer","channel":"resync"}', 'one', 'two'])
    client.close()
  } finally {
    await server.app.close()
  }
})

test('hostile v1 input closes only the connection that sent it', async () => {
  const { server, v1Port } = await startBridge({ joinTimeoutMs: 400, maxMessageBytes: 1024, maxFrameBytes: 4096 })
  try {
    const web = await TestClient.join(server.url, { uid: 'web', channel: 'calm' })
    await waitForMembers(server.app, 'calm', 1)
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'calm')
    await tcp.next()
    await waitForMembers(server.app, 'calm', 2)

    const prefix = (hex: string): Buffer => Buffer.from(hex + '00'.repeat(12), 'hex')
    const cases: Array<[string, Buffer[]]> = [
      ['wrong type byte', [prefix('4e000021')]],
      ['zero length', [prefix('4d000000')]],
      ['over the frame limit', [prefix('4d100000')]],
      ['CBOR of wrong types as first frame', [encodeFrame(Buffer.from('83010203', 'hex'), 1, '0000000000000001')]],
      ['truncated CBOR as first frame', [encodeFrame(encodeMsg({ uid: 'x', channel: 'calm', message: Buffer.from('hi') }).subarray(0, 10), 1, '0000000000000001')]],
      ['a huge uid', [encodeFrame(encodeMsg({ uid: 'u'.repeat(5000), channel: 'calm', message: Buffer.alloc(0) }), 1, '0000000000000001')]],
      ['a truncated prefix, then silence', [Buffer.from('4d00', 'hex')]],
      ['nothing at all', []]
    ]
    for (const [what, writes] of cases) {
      const hostile = await V1TestClient.connect(v1Port, 'h', 'calm')
      for (const bytes of writes) hostile.write(bytes)
      assert.equal(await hostile.closedWithin(2000), true, what)
    }

    // One byte per 100 ms: the frame is never whole within joinTimeoutMs.
    const slow = await V1TestClient.connect(v1Port, 'slow', 'calm')
    const frame = tcp.frame('x')
    let sent = 0
    const drip = setInterval(() => { if (sent < frame.length) slow.write(frame.subarray(sent, ++sent)) }, 100)
    assert.equal(await slow.closedWithin(2000), true, 'a client sending one byte at a time')
    clearInterval(drip)

    // A joined member: a frame over maxMessageBytes is dropped, one with wrong CBOR types is passed on to v1 only.
    tcp.send('x'.repeat(2000))
    tcp.write(encodeFrame(Buffer.from('83010203', 'hex'), tcp.cid, tcp.key))
    tcp.send('after all that')
    assert.equal((await web.next()).text, 'after all that')
    assert.equal(server.app.mles.metrics().dropped_messages_oversize, 1)
    web.send('and back')
    assert.equal((await tcp.next()).text, 'and back')
    await waitFor(() => server.app.mles.metrics().active_connections === 2, 'only the two good connections left')
    tcp.close()
  } finally {
    await server.app.close()
  }
})

test('the v1 option is checked, and a port in use fails registration', async () => {
  await assert.rejects(startMles({ v1: { port: 70000 } }), /option "v1.port" must be an integer from 0 to 65535/)
  await assert.rejects(startMles({ v1: { port: 0, peer: 'peer.example' }, redis: 'redis://127.0.0.1:1' }), /option "v1.peer" cannot be combined with redis/)
  const { server, v1Port } = await startBridge()
  try {
    await assert.rejects(startMles({ v1: { port: v1Port, host: '127.0.0.1' } }), /cannot listen for v1 clients on 127\.0\.0\.1/)
  } finally {
    await server.app.close()
  }
})

test('mles --v1-port: the command serves v1 clients beside WebSocket ones', async () => {
  const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
  for (const [args, message] of [
    [['--v1-port', '99999'], /--v1-port/],
    [['--v1-peer', 'peer.example:8077'], /--v1-peer needs --v1-port/],
    [['--v1-port', '0', '--v1-peer', 'a b'], /--v1-peer.*HOST or HOST:PORT/]
  ] as const) {
    const refused = runCli(['-d', 'localhost', '-w', www, '--no-tls', ...args])
    assert.equal(await refused.exited, 2)
    assert.match(refused.stderr(), message)
  }
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--v1-port', '0'], { MLES_KEY: 'k', MLES_LOG_LEVEL: 'warn' })
  try {
    const port = Number((await cli.waitFor(/serving http:\/\/localhost:(\d+)\//))[1])
    const v1Port = Number((await cli.waitFor(/v1 TCP clients on port (\d+)/))[1])
    const web = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'web', channel: 'cli', auth: computeAuth('web', 'cli', 'k') })
    await sleep(100)
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'cli', { sharedKey: 'k' })
    assert.equal((await tcp.next()).msg.uid, 'web')
    tcp.send('over tcp')
    assert.equal((await web.next()).text, 'over tcp')
    tcp.close()
  } finally {
    cli.child.kill('SIGTERM')
    assert.equal(await cli.exited, 0)
  }
})

test('on a dual-stack listener an IPv4 client is checked against its plain IPv4 address', async () => {
  let bridge: { server: RunningServer, v1Port: number }
  try {
    bridge = await startBridge({ v1: { port: 0, host: '::' } })
  } catch (error) {
    if (/EAFNOSUPPORT|EADDRNOTAVAIL/.test((error as Error).message)) return // no IPv6 here: nothing to check
    throw error
  }
  try {
    const client = await V1TestClient.join(bridge.v1Port, 'four', 'mapped')
    await waitForMembers(bridge.server.app, 'mapped', 1)
    assert.equal(client.socket.remoteAddress, '127.0.0.1')
    client.close()
  } finally {
    await bridge.server.app.close()
  }
})
