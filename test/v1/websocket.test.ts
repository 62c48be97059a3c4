import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { CborWsClient } from '../helpers/cbor-ws-client.js'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { sleep, startMles, waitFor, waitForMembers, type RunningServer } from '../helpers/server.js'
import { startV1Server, V1TestClient } from '../helpers/v1-client.js'
import { MlesOptionError, type MlesOptions } from '../../src/index.js'

async function startCborServer (options: MlesOptions = {}): Promise<{ server: RunningServer, v1Port: number, cborUrl: string }> {
  const { server, v1Port } = await startV1Server({ ...options, v1: { port: 0, host: '127.0.0.1', webSocketPath: '/v1', ...options.v1 } })
  return { server, v1Port, cborUrl: `ws://127.0.0.1:${server.port}/v1` }
}

/** The status a raw upgrade request offering `protocols` gets (the ws client refuses to send a header with spaces in a token). */
async function upgradeStatus (port: number, path: string, protocols: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-protocol': protocols } })
    req.on('upgrade', (response, socket) => { socket.destroy(); resolve(response.statusCode ?? 0) })
    req.on('response', (response) => { response.resume(); resolve(response.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
}

test('v1.webSocketPath: CBOR WebSocket clients join the same channels as v1 TCP and v2 clients, their messages untouched', async () => {
  const { server, v1Port, cborUrl } = await startCborServer()
  try {
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'shared')
    await waitForMembers(server.app, 'shared', 1)
    const web = await TestClient.join(server.url, { uid: 'web', channel: 'shared' })
    assert.equal((await web.next()).text, '{"uid":"tcp","channel":"shared"}', 'the v2 client\'s replay: the v1 join')
    assert.equal((await tcp.next()).msg.uid, 'web')
    await waitForMembers(server.app, 'shared', 2)

    const browser = await CborWsClient.open(cborUrl)
    assert.equal(browser.ws.protocol, 'mles-websocket')
    browser.send('cbor', 'shared', '')
    const replay = [await browser.next(), await browser.next()]
    assert.deepEqual(replay.map((m) => [m.uid, m.channel, m.text]), [['tcp', 'shared', ''], ['web', 'shared', '']], 'the history, as v1 Msgs without the prefix')
    await waitForMembers(server.app, 'shared', 3)
    const joinAtTcp = await tcp.next()
    assert.deepEqual([joinAtTcp.msg.uid, joinAtTcp.text], ['cbor', ''], 'v1 members see the CBOR client\'s join')
    assert.equal(web.pending, 0, 'v2 members get no live joins')
    assert.deepEqual((await server.app.mles.members('shared')), ['cbor', 'tcp', 'web'])

    const sealed = Buffer.concat([randomBytes(16), Buffer.from('sealed text')])
    const sent = CborWsClient.encode('cbor', 'shared', sealed)
    browser.sendRaw(sent)
    const atTcp = await tcp.next()
    assert.deepEqual(atTcp.frame.subarray(16), sent, 'v1 TCP members get the message as the payload of a v1 frame, byte for byte')
    assert.equal(atTcp.frame.readUInt32BE(4), Number.parseInt(atTcp.frame.toString('hex', 12, 16), 16), 'its CID is the low 32 bits of its key')
    assert.deepEqual((await web.next()).data, sealed, 'v2 members get the message, its random bytes intact')

    tcp.send('from tcp')
    web.send('from the web')
    const got = [await browser.next(), await browser.next()]
    assert.deepEqual(got.map((m) => [m.uid, m.text]), [['tcp', 'from tcp'], ['web', 'from the web']])
    await sleep(100)
    assert.equal(browser.pending, 0, 'no echo')
    assert.equal(server.app.mles.metrics().active_connections, 3)

    // A joiner later gets the CBOR client's message in the history.
    const late = await V1TestClient.join(v1Port, 'late', 'shared')
    const history = []
    for (let i = 0; i < 6; i++) history.push(await late.next())
    assert.deepEqual(history.map((m) => m.msg.uid), ['tcp', 'web', 'cbor', 'cbor', 'tcp', 'web'], 'joins, then the messages, in order')
    assert.deepEqual(Buffer.from(history[3].msg.message), sealed)
    late.close()
    browser.close()
    tcp.close()
    web.close()
  } finally {
    await server.app.close()
  }
})

test('v1.webSocketPath: one connection carries several channels; an empty message leaves them all and closes with 1000', async () => {
  const { server, v1Port, cborUrl } = await startCborServer()
  try {
    const inA = await V1TestClient.join(v1Port, 'a1', 'alpha')
    const inB = await V1TestClient.join(v1Port, 'b1', 'beta')
    await waitForMembers(server.app, 'alpha', 1)
    await waitForMembers(server.app, 'beta', 1)
    const browser = await CborWsClient.open(cborUrl)
    browser.send('multi', 'alpha', '')
    browser.send('multi', 'beta', 'hello beta')
    const replays = [await browser.next(), await browser.next()].map((m) => `${m.channel}:${m.uid}`).sort()
    assert.deepEqual(replays, ['alpha:a1', 'beta:b1'])
    assert.equal((await inA.next()).msg.uid, 'multi')
    const atB = await inB.next()
    assert.deepEqual([atB.msg.uid, atB.text], ['multi', 'hello beta'], 'a first Msg with a message joins and says it: v1 members get it once, verbatim')
    browser.send('multi', 'alpha', 'to alpha')
    assert.equal((await inA.next()).text, 'to alpha')
    await sleep(100)
    assert.equal(inB.pending, 0)
    inA.send('back')
    assert.deepEqual(await browser.next().then((m) => [m.channel, m.text]), ['alpha', 'back'])
    browser.sendRaw(Buffer.alloc(0))
    assert.equal((await browser.closed).code, 1000)
    await waitForMembers(server.app, 'alpha', 1)
    await waitForMembers(server.app, 'beta', 1)
    inA.close()
    inB.close()
  } finally {
    await server.app.close()
  }
})

test('v1.webSocketPath: each bad input closes only its own connection, with a code and reason', async () => {
  const { server, v1Port, cborUrl } = await startCborServer({ maxMessageBytes: 32 * 1024, maxFrameBytes: 64 * 1024 })
  try {
    const steady = await CborWsClient.open(cborUrl)
    steady.send('steady', 'calm', '')
    await waitForMembers(server.app, 'calm', 1)
    const listener = await V1TestClient.join(v1Port, 'listener', 'calm')
    assert.equal((await listener.next()).msg.uid, 'steady')
    assert.equal((await steady.next()).uid, 'listener')

    await assert.rejects(CborWsClient.open(cborUrl, 'chat'), /HTTP 400/)
    assert.equal(await upgradeStatus(server.port, '/v1', 'chat, mles-websocket'), 400, 'tokens are not trimmed, as in the reference')
    assert.equal(await upgradeStatus(server.port, '/v1', 'chat,mles-websocket'), 101)

    const garbage = await CborWsClient.open(cborUrl)
    garbage.sendRaw(Buffer.from([0xff, 0x00]))
    assert.deepEqual(await garbage.closed, { code: 1007, reason: 'each message must be a CBOR Msg {uid, channel, message}' })
    const json = await CborWsClient.open(cborUrl)
    json.sendRaw('{"uid":"json","channel":"calm"}')
    assert.equal((await json.closed).code, 1007)
    const huge = await CborWsClient.open(cborUrl)
    huge.send('huge', 'calm', Buffer.alloc(64 * 1024 + 1))
    assert.equal((await huge.closed).code, 1009)
    const twin = await CborWsClient.open(cborUrl)
    twin.send('steady', 'calm', '')
    assert.deepEqual(await twin.closed, { code: 1008, reason: 'uid already joined on this channel' })

    steady.send('steady', 'calm', 'still here')
    assert.equal((await listener.next()).text, 'still here')
    listener.send('hello')
    assert.equal((await steady.next()).text, 'hello')
    await waitFor(() => server.app.mles.metrics().active_connections === 2, 'only the two left')
    listener.close()

    // Shutting down closes CBOR clients with 1001, as every other member.
    const closing = steady.closed
    await server.app.close()
    assert.equal((await closing).code, 1001)
  } finally {
    await server.app.close()
  }
})

test('v1.webSocketPath is checked: a path, and not the Mles endpoint\'s own', async () => {
  await assert.rejects(startMles({ v1: { port: 0, webSocketPath: 'v1' } }), (error: unknown) => error instanceof MlesOptionError && /v1\.webSocketPath.*must be a URL path/.test(error.message))
  await assert.rejects(startMles({ path: '/chat', v1: { port: 0, webSocketPath: '/chat' } }), /v1\.webSocketPath.*must differ from path/)
})

test('mles --v1-ws-path: the command takes CBOR WebSocket clients beside v1 TCP ones', async () => {
  const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--v1-port', '0', '--v1-ws-path', '/v1'], { MLES_LOG_LEVEL: 'warn' })
  const [, port] = await cli.waitFor(/serving http:\/\/localhost:(\d+)\//)
  const browser = await CborWsClient.open(`ws://127.0.0.1:${port}/v1`)
  browser.send('cbor', 'cmd', '')
  await new Promise((resolve) => setTimeout(resolve, 200))
  const web = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'web', channel: 'cmd' })
  assert.equal((await web.next()).text, '{"uid":"cbor","channel":"cmd"}', 'the v2 client\'s replay: the CBOR client\'s join')
  assert.equal((await browser.next()).uid, 'web', 'the v2 client\'s join')
  browser.send('cbor', 'cmd', 'over the command')
  assert.equal((await web.next()).text, 'over the command')
  browser.close()
  web.close()
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
  const refused = runCli(['--no-tls', '--port', '0', '-d', 'localhost', '-w', www, '--v1-ws-path', '/v1'], { MLES_LOG_LEVEL: 'silent' })
  assert.equal(await refused.exited, 2)
  assert.match(refused.stderr(), /--v1-ws-path needs --v1-port/)
})

test('v1.webSocketPath: keep-alive pings CBOR clients and closes one that stops answering (1008 keep-alive timeout)', async () => {
  const { server, cborUrl } = await startCborServer({ pingIntervalMs: 100, maxMissedPongs: 2 })
  try {
    const alive = await CborWsClient.open(cborUrl)
    alive.send('alive', 'pinged', '')
    await new Promise<void>((resolve) => { alive.ws.once('ping', () => { resolve() }) })
    // A client that reads nothing more: its socket paused, no pong ever goes back.
    const silent = await CborWsClient.open(cborUrl)
    silent.send('silent', 'pinged', '')
    await waitForMembers(server.app, 'pinged', 2)
    const raw = (silent.ws as unknown as { _socket: import('node:net').Socket })._socket
    raw.pause()
    await waitFor(() => server.app.mles.metrics().dropped_keepalive === 1, 'the silent client dropped', 5000)
    await waitForMembers(server.app, 'pinged', 1)
    await sleep(300)
    assert.equal(alive.ws.readyState, 1, 'the answering client stays')
    alive.close()
    raw.destroy()
  } finally {
    await server.app.close()
  }
})
