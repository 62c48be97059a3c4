import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { test } from 'node:test'
import { CborWsClient } from '../helpers/cbor-ws-client.js'
import { TestClient } from '../helpers/client.js'
import { sleep, waitForMembers } from '../helpers/server.js'
import { startV1Server, V1TestClient } from '../helpers/v1-client.js'
import { V1WebSocketProxy } from '../../src/v1/ws-proxy.js'

async function startProxy (v1Port: number, keyMode: { sharedKey?: string, addressKey?: string } = {}): Promise<{ proxy: V1WebSocketProxy, url: string, log: string[] }> {
  const log: string[] = []
  const proxy = await V1WebSocketProxy.start({ server: { host: '127.0.0.1', port: v1Port }, host: '127.0.0.1', port: 0, keyMode, log: (line) => { log.push(line) } })
  return { proxy, url: `ws://127.0.0.1:${proxy.address.port}/`, log }
}

/** The 16 random bytes a WebSocket client of v1 puts before each message (SPEC-v1 §9), then the text. */
function withIv (text: string): Buffer {
  return Buffer.concat([randomBytes(16), Buffer.from(text)])
}

test('a CBOR WebSocket client, a v1 TCP client and a v2 client talk in one channel through the proxy; each message, its 16 leading random bytes included, arrives untouched', async () => {
  const { server, v1Port } = await startV1Server()
  const { proxy, url } = await startProxy(v1Port)
  try {
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'three')
    await waitForMembers(server.app, 'three', 1)
    const web = await TestClient.join(server.url, { uid: 'web', channel: 'three' })
    assert.equal((await web.next()).text, '{"uid":"tcp","channel":"three"}', 'the v2 client\'s replay: the v1 join')
    assert.equal((await tcp.next()).msg.uid, 'web', 'the v2 join reaches v1')
    await waitForMembers(server.app, 'three', 2)

    const browser = await CborWsClient.open(url)
    browser.send('cbor', 'three', '')
    const replay = [await browser.next(), await browser.next()]
    assert.deepEqual(replay.map((m) => [m.uid, m.text]), [['tcp', ''], ['web', '']], 'the history: both joins, as v1 Msgs without the prefix')
    await waitForMembers(server.app, 'three', 3)
    assert.equal((await tcp.next()).msg.uid, 'cbor', 'the CBOR client\'s join reaches the v1 member (v2 members get no live joins)')

    const sealed = withIv('from the browser')
    const sent = CborWsClient.encode('cbor', 'three', sealed)
    browser.sendRaw(sent)
    const atTcp = await tcp.next()
    assert.deepEqual(atTcp.frame.subarray(16), sent, 'the WebSocket message is the payload of the v1 frame, byte for byte')
    assert.deepEqual(Buffer.from(atTcp.msg.message), sealed)
    const atWeb = await web.next()
    assert.deepEqual(atWeb.data, sealed, 'a v2 client gets the message, random bytes and all')

    tcp.send('from tcp')
    web.send('from the web')
    const got = [await browser.next(), await browser.next()]
    assert.deepEqual(got.map((m) => [m.uid, m.channel, m.text]), [['tcp', 'three', 'from tcp'], ['web', 'three', 'from the web']])
    await sleep(100)
    assert.equal(browser.pending, 0, 'no echo of its own message')
    browser.close()
    tcp.close()
    web.close()
  } finally {
    await proxy.close()
    await server.app.close()
  }
})

test('one WebSocket connection multiplexes several channels, one v1 connection each; shared-key mode keys each as the server checks it', async () => {
  const { server, v1Port } = await startV1Server({ key: 'sesame' })
  const { proxy, url } = await startProxy(v1Port, { sharedKey: 'sesame' })
  try {
    const inA = await V1TestClient.join(v1Port, 'a1', 'alpha', { sharedKey: 'sesame' })
    const inB = await V1TestClient.join(v1Port, 'b1', 'beta', { sharedKey: 'sesame' })
    await waitForMembers(server.app, 'alpha', 1)
    await waitForMembers(server.app, 'beta', 1)
    const browser = await CborWsClient.open(url)
    browser.send('multi', 'alpha', '')
    browser.send('multi', 'beta', '')
    const replays = [await browser.next(), await browser.next()].map((m) => `${m.channel}:${m.uid}`).sort()
    assert.deepEqual(replays, ['alpha:a1', 'beta:b1'])
    await waitForMembers(server.app, 'alpha', 2)
    await waitForMembers(server.app, 'beta', 2)
    assert.equal((await inA.next()).msg.uid, 'multi')
    assert.equal((await inB.next()).msg.uid, 'multi')
    browser.send('multi', 'alpha', 'to alpha')
    browser.send('multi', 'beta', 'to beta')
    assert.equal((await inA.next()).text, 'to alpha')
    assert.equal((await inB.next()).text, 'to beta')
    await sleep(100)
    assert.equal(inA.pending + inB.pending, 0, 'each channel gets only its own')
    inA.send('back from alpha')
    inB.send('back from beta')
    const back = [await browser.next(), await browser.next()].map((m) => `${m.channel}:${m.text}`).sort()
    assert.deepEqual(back, ['alpha:back from alpha', 'beta:back from beta'])
    assert.equal(server.app.mles.metrics().rejected_auth, 0, 'no key was refused')

    // An empty message ends every v1 connection of the WebSocket, which then closes.
    browser.sendRaw(Buffer.alloc(0))
    assert.equal((await browser.closed).code, 1000)
    await waitForMembers(server.app, 'alpha', 1)
    await waitForMembers(server.app, 'beta', 1)
    inA.close()
    inB.close()
  } finally {
    await proxy.close()
    await server.app.close()
  }
})

test('the handshake needs the mles-websocket subprotocol, as the reference matches it; plain HTTP gets 426', async () => {
  const { server, v1Port } = await startV1Server()
  const { proxy, url, log } = await startProxy(v1Port)
  try {
    await assert.rejects(CborWsClient.open(url, 'chat'), /HTTP 400/)
    await assert.rejects(CborWsClient.open(url, []), /HTTP 400/)
    const among = await CborWsClient.open(url, ['chat', 'mles-websocket'])
    assert.equal(among.ws.protocol, 'mles-websocket')
    among.close()
    assert.ok(log.some((line) => /does not offer the subprotocol mles-websocket/.test(line)))
    const status = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port: proxy.address.port, path: '/' }, (response) => { response.resume(); resolve(response.statusCode ?? 0) }).on('error', reject).end()
    })
    assert.equal(status, 426)
  } finally {
    await proxy.close()
    await server.app.close()
  }
})

test('hostile input closes only the WebSocket that sent it: bad CBOR (1007), an oversize message (1009), a v1 server that closes the channel (1001), one that cannot be reached (1011)', async () => {
  const { server, v1Port } = await startV1Server()
  const { proxy, url } = await startProxy(v1Port)
  try {
    const steady = await CborWsClient.open(url)
    steady.send('steady', 'calm', '')
    await waitForMembers(server.app, 'calm', 1)
    const listener = await V1TestClient.join(v1Port, 'listener', 'calm')
    assert.equal((await listener.next()).msg.uid, 'steady')
    const joinNotice = await steady.next()
    assert.deepEqual([joinNotice.uid, joinNotice.text], ['listener', ''], 'the listener\'s join')

    const garbage = await CborWsClient.open(url)
    garbage.sendRaw(Buffer.from([0xff, 0x00, 0x13]))
    assert.deepEqual(await garbage.closed, { code: 1007, reason: 'each message must be a CBOR Msg {uid, channel, message}' })

    const textual = await CborWsClient.open(url)
    textual.sendRaw('{"uid":"json","channel":"calm"}')
    assert.equal((await textual.closed).code, 1007, 'a v2 JSON join is not a CBOR Msg')

    const huge = await CborWsClient.open(url)
    huge.sendRaw(Buffer.alloc(0xffffff + 1))
    assert.equal((await huge.closed).code, 1009)

    // The server refuses a second connection with the uid already in the channel: that WebSocket is told.
    const twin = await CborWsClient.open(url)
    twin.send('steady', 'calm', '')
    const cut = await twin.closed
    assert.equal(cut.code, 1001)
    assert.match(cut.reason, /the v1 server closed the connection \(channel calm\)/)

    // Through all of that the first client kept talking.
    steady.send('steady', 'calm', 'still here')
    assert.equal((await listener.next()).text, 'still here')
    listener.send('hello steady')
    assert.equal((await steady.next()).text, 'hello steady')
    steady.close()
    listener.close()
  } finally {
    await proxy.close()
    await server.app.close()
  }

  // Nothing listens on the v1 port any more.
  const closedPort = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo
      probe.close(() => { resolve(port) })
    })
  })
  const { proxy: lonely, url: lonelyUrl } = await startProxy(closedPort)
  try {
    const stranded = await CborWsClient.open(lonelyUrl)
    stranded.send('u', 'c', '')
    const closed = await stranded.closed
    assert.equal(closed.code, 1011)
    assert.match(closed.reason, /cannot reach the v1 server: connect ECONNREFUSED/)
  } finally {
    await lonely.close()
  }
})
