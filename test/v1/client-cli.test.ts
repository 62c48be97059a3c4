import assert from 'node:assert/strict'
import { createServer, type AddressInfo } from 'node:net'
import { test } from 'node:test'
import { CborWsClient } from '../helpers/cbor-ws-client.js'
import { runClientCli } from '../helpers/cli.js'
import { waitFor, waitForMembers } from '../helpers/server.js'
import { startV1Server, V1TestClient } from '../helpers/v1-client.js'
import type { MlesOptions } from '../../src/index.js'

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo
      probe.close(() => { resolve(port) })
    })
  })
}

test('mles-client --v1 in a pipe: joins with an empty Msg, sends each line with its newline, prints others as uid:message, skips joins', async () => {
  const { server, v1Port } = await startV1Server()
  try {
    const peer = await V1TestClient.join(v1Port, 'peer', 'pipe')
    await waitForMembers(server.app, 'pipe', 1)
    const cli = runClientCli(['--v1', `127.0.0.1:${v1Port}`, '-c', 'pipe', '-u', 'console'])
    const join = await peer.next(10_000)
    assert.deepEqual([join.msg.uid, join.msg.channel, join.text], ['console', 'pipe', ''], 'the join: an empty message')
    await waitForMembers(server.app, 'pipe', 2)
    cli.child.stdin?.write('hello v1\nsecond line\n')
    assert.equal((await peer.next()).text, 'hello v1\n', 'the line with its newline, as the reference sends what it reads')
    assert.equal((await peer.next()).text, 'second line\n')
    peer.send('from the peer\n')
    peer.send('no newline')
    await cli.waitFor(/peer:from the peer\npeer:no newline\n/)
    assert.doesNotMatch(cli.stdout(), /peer:\n/, 'the peer\'s join (replayed) is not shown')
    cli.child.stdin?.end()
    assert.equal(await cli.exited, 0)
    await waitForMembers(server.app, 'pipe', 1)
    peer.close()
  } finally {
    await server.app.close()
  }
})

test('mles-client --v1 keys as the server checks: MLES_KEY (shared key) and MLES_ADDR_KEY (address mode)', async () => {
  for (const [serverOptions, env] of [
    [{ key: 'sesame' }, { MLES_KEY: 'sesame' }],
    [{ v1: { port: 0, host: '127.0.0.1', addressKey: 'pepper' } }, { MLES_ADDR_KEY: 'pepper' }]
  ] as Array<[MlesOptions, Record<string, string>]>) {
    const { server, v1Port } = await startV1Server(serverOptions)
    try {
      const cli = runClientCli(['--v1', `127.0.0.1:${v1Port}`, '-c', 'keyed', '-u', 'console'], env)
      await waitForMembers(server.app, 'keyed', 1)
      cli.child.stdin?.write('accepted\n')
      await waitFor(() => server.app.mles.history('keyed').some((frame) => frame.data.toString() === 'accepted\n'), `the line in the history (${JSON.stringify(env)})`)
      cli.child.stdin?.end()
      assert.equal(await cli.exited, 0)
      assert.equal(server.app.mles.metrics().rejected_auth, 0)
    } finally {
      await server.app.close()
    }
  }
  // A wrong key: the server closes the connection, the client says so and exits 1.
  const { server, v1Port } = await startV1Server({ key: 'sesame' })
  try {
    const cli = runClientCli(['--v1', `127.0.0.1:${v1Port}`, '-c', 'keyed', '-u', 'console'], { MLES_KEY: 'wrong' })
    assert.equal(await cli.exited, 1)
    assert.match(cli.stderr(), /^mles-client: the v1 server closed the connection\n$/)
    assert.equal(server.app.mles.metrics().rejected_auth, 1)
  } finally {
    await server.app.close()
  }
})

test('mles-client --v1: bad flags and an unreachable server each give one error line and an exit code', async () => {
  const port = await freePort()
  const refused = runClientCli(['--v1', `127.0.0.1:${port}`, '-c', 'c', '-u', 'u'])
  assert.equal(await refused.exited, 1)
  assert.match(refused.stderr(), new RegExp(`^mles-client: cannot connect to 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED [^\\n]+\\n$`))
  for (const [args, pattern] of [
    [['--v1', 'host:99999', '-c', 'c', '-u', 'u'], /--v1 <host\[:port\]>' argument 'host:99999' is invalid/],
    [['--v1', 'localhost', '-s', 'ws://localhost/', '-c', 'c', '-u', 'u'], /--v1 cannot be combined with -s\/--server/],
    [['--v1', 'localhost'], /-c\/--channel and -u\/--uid are required/],
    [['--ws-proxy', '8076', '-s', 'ws://localhost/', '-c', 'c', '-u', 'u'], /--ws-proxy needs --v1 HOST\[:PORT\]/],
    [['--v1', 'localhost', '--ws-proxy', '70000'], /argument '70000' is invalid\. must be PORT or HOST:PORT/]
  ] as Array<[string[], RegExp]>) {
    const cli = runClientCli(args, {}, 'ignore')
    assert.equal(await cli.exited, 2, args.join(' '))
    assert.match(cli.stderr(), pattern)
    assert.equal(cli.stderr().trim().split('\n').length, 1, `one line: ${cli.stderr()}`)
  }
})

test('mles-client --v1 HOST --ws-proxy [HOST:]PORT: CBOR WebSocket clients reach the v1 server through the command', async () => {
  const { server, v1Port } = await startV1Server()
  try {
    const cli = runClientCli(['--v1', `127.0.0.1:${v1Port}`, '--ws-proxy', '127.0.0.1:0'], {}, 'ignore')
    const [, url] = await cli.waitFor(/WebSocket proxy on (ws:\/\/127\.0\.0\.1:\d+\/) \(subprotocol mles-websocket\) to the v1 server 127\.0\.0\.1:\d+/)
    const tcp = await V1TestClient.join(v1Port, 'tcp', 'proxied')
    await waitForMembers(server.app, 'proxied', 1)
    const browser = await CborWsClient.open(url)
    browser.send('browser', 'proxied', '')
    assert.equal((await browser.next()).uid, 'tcp')
    assert.equal((await tcp.next()).msg.uid, 'browser')
    browser.send('browser', 'proxied', 'through the command')
    assert.equal((await tcp.next()).text, 'through the command')
    browser.close()
    tcp.close()
    cli.child.kill('SIGTERM')
    assert.equal(await cli.exited, 0)
  } finally {
    await server.app.close()
  }
})
