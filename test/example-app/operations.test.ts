import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { makeCa, issue } from '../helpers/certs.js'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { get, makeWebRoot, startStandalone } from '../helpers/standalone.js'

const www = makeWebRoot({ 'a.test/index.html': '<h1>A</h1>', 'a.test/large.bin': Buffer.alloc(2 * 1024 * 1024, 7) })

test('Prometheus endpoint on its own listener: the seven reference metrics and process metrics', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, metricsListen: { host: '127.0.0.1', port: 0 }, perIpLimit: 1 })
  const member = await TestClient.join(`ws://127.0.0.1:${server.address.port}/`, { uid: 'a', channel: 'c' })
  await assert.rejects(TestClient.connect(`ws://127.0.0.1:${server.address.port}/`), /429/)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const port = server.metricsAddress?.port ?? 0
  assert.notEqual(port, server.address.port)
  const scrape = await fetch(`http://127.0.0.1:${port}/metrics`)
  assert.equal(scrape.status, 200)
  assert.match(scrape.headers.get('content-type') ?? '', /text\/plain/)
  const text = await scrape.text()
  for (const name of ['active_connections', 'total_messages_sent', 'total_messages_received', 'total_channels', 'total_errors', 'total_dropped_connections', 'dropped_by_ip']) {
    assert.match(text, new RegExp(`^mles_${name} \\d+$`, 'm'), name)
  }
  assert.match(text, /^mles_active_connections 1$/m)
  assert.match(text, /^mles_dropped_by_ip 1$/m)
  assert.match(text, /^mles_total_channels 1$/m)
  assert.match(text, /^process_cpu_user_seconds_total /m)
  assert.match(text, /^nodejs_heap_size_used_bytes /m)
  assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404)
  assert.equal((await get(server.address.port, '/metrics', { host: 'a.test' })).status, 404, 'not on the public port')
  member.close()
})

test('a periodic metrics line, and the level from MLES_LOG_LEVEL', async () => {
  const cli = runCli(['-d', 'a.test', '-w', www, '--no-tls', '--host', '127.0.0.1', '--port', '0', '--metrics-interval', '1'])
  await cli.waitFor(/"msg":"mles metrics: active_connections=0 total_messages_sent=0 total_messages_received=0 total_channels=0 total_errors=0 total_dropped_connections=0 dropped_by_ip=0"/, 5000)
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
})

test('--redirect: 301 to https for configured domains on --http-port; others 404', async () => {
  const ca = makeCa()
  const cert = issue(ca, ['a.test'])
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, tls: 'files', tlsCert: cert.cert, tlsKey: cert.key, redirect: true, httpPort: 0 })
  const httpPort = server.httpAddress?.port ?? 0
  const answer = await get(httpPort, '/docs/page?x=1', { host: 'A.test:80' })
  assert.equal(answer.status, 301)
  assert.equal(answer.headers.location, `https://a.test:${server.address.port}/docs/page?x=1`)
  assert.equal((await get(httpPort, '/', { host: 'evil.test' })).status, 404)
  assert.equal((await get(httpPort, '/.well-known/acme-challenge/nothing', { host: 'a.test' })).status, 404)
})

test('graceful shutdown: in-flight responses finish, members get 1001, new requests are refused', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, compressionCacheMb: 0 })
  const port = server.address.port
  const member = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'a', channel: 'c' })
  // a slow download is in flight when shutdown begins
  let received = 0
  const download = new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/large.bin', headers: { host: 'a.test' } }, (response) => {
      response.on('data', (chunk: Buffer) => {
        received += chunk.length
        response.pause()
        setTimeout(() => response.resume(), 2)
      })
      response.on('end', () => { resolve(received) })
      response.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const shutdown = server.shutdown()
  assert.equal((await member.closedWithin()).code, 1001)
  assert.equal(await download, 2 * 1024 * 1024, 'the download in flight completed')
  await shutdown
  await server.closed
  await assert.rejects(get(port, '/', { host: 'a.test' }))
})

test('shutdown is bounded: a response that never drains is cut at shutdownTimeoutMs', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, compressionCacheMb: 0, shutdownTimeoutMs: 500 })
  const port = server.address.port
  await new Promise<void>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/large.bin', headers: { host: 'a.test' } }, (response) => {
      response.once('data', () => { response.pause(); resolve() })
    })
    req.on('error', () => {})
    req.end()
  })
  const started = Date.now()
  await server.shutdown()
  const took = Date.now() - started
  assert.ok(took >= 400 && took < 4000, `took ${took} ms`)
})

/** A connection opened ahead of need, as Chromium's preconnect does, that never sends a request; over TLS its handshake is done. */
async function spareConnection (port: number, tlsCa?: string): Promise<{ closed: Promise<void> }> {
  const socket = tlsCa === undefined
    ? connect(port, '127.0.0.1')
    : tlsConnect({ port, host: '127.0.0.1', servername: 'a.test', ca: tlsCa })
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once(tlsCa === undefined ? 'connect' : 'secureConnect', resolve))
  return { closed: new Promise((resolve) => { socket.once('close', () => { resolve() }) }) }
}

test('a connection that never sends a request (a browser\'s preconnect) does not hold the shutdown, plain or TLS', async () => {
  const ca = makeCa()
  const cert = issue(ca, ['a.test'])
  for (const tls of [undefined, { tls: 'files' as const, tlsCert: cert.cert, tlsKey: cert.key }]) {
    // Far beyond the test's own timeout: a shutdown that waited for the spare connection would not end.
    const server = await startStandalone({ domains: ['a.test'], wwwroot: www, shutdownTimeoutMs: 600_000, ...tls })
    const port = server.address.port
    const member = await TestClient.join(`${tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${port}/`, { uid: 'a', channel: 'c' }, tls === undefined ? {} : { ca: ca.pem, servername: 'a.test' })
    const spare = await spareConnection(port, tls === undefined ? undefined : ca.pem)
    await server.shutdown()
    assert.equal((await member.closedWithin()).code, 1001, 'members are still closed with 1001 first')
    await spare.closed
  }
})
