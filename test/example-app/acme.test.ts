import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ServerHandle } from '../../example-app/server.js'
import { TestClient } from '../helpers/client.js'
import { freePort, startPebble, type Pebble } from '../helpers/pebble.js'
import { get, makeWebRoot, startStandalone } from '../helpers/standalone.js'
import { waitFor } from '../helpers/server.js'
import { peerCertificate } from '../helpers/tls-client.js'

// End to end against a real ACME CA (Pebble): issuance over http-01 for two
// names served by SNI, the cache reused on restart, renewal while connected.
const domains = ['a.localhost', 'b.localhost']
const www = makeWebRoot({ 'a.localhost/index.html': 'A', 'b.localhost/index.html': 'B' })
const fastAcme = { pollMinMs: 100, pollMaxMs: 1000, retryMinMs: 200, retryMaxMs: 2000, renewBeforeDays: 30, checkIntervalMs: 60_000, requestRetries: 2 }

let pebble: Pebble
let httpPort: number
after(async () => { await pebble?.stop() })

async function startAcme (cache: string, overrides: Record<string, unknown> = {}): Promise<ServerHandle> {
  return await startStandalone({
    domains,
    wwwroot: www,
    tls: 'acme',
    httpPort,
    cache,
    email: 'ops@example.test',
    acmeDirectory: pebble.directoryUrl,
    acmeCaFile: pebble.caFile,
    acme: fastAcme,
    ...overrides
  })
}

async function talk (port: number, servername: string, root: string): Promise<void> {
  const url = `wss://127.0.0.1:${port}/`
  const channel = `over-${servername}`
  const a = await TestClient.join(url, { uid: 'a', channel }, { ca: root, servername })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const b = await TestClient.join(url, { uid: 'b', channel }, { ca: root, servername })
  assert.equal(JSON.parse((await b.next()).text).uid, 'a')
  await new Promise((resolve) => setTimeout(resolve, 50))
  a.send(`hello ${servername}`)
  assert.equal((await b.next()).text, `hello ${servername}`)
  a.close()
  b.close()
}

test('certificates for two names from Pebble, served by SNI; Mles over wss with each', async () => {
  httpPort = await freePort()
  pebble = await startPebble({ httpPort })
  const cache = mkdtempSync(join(tmpdir(), 'mles-acme-cache-'))
  const server = await startAcme(cache)
  await waitFor(() => server.certificates().every((status) => status.notAfter !== null), 'both certificates', 20_000)
  const root = await pebble.issuingRoot()
  const port = server.address.port
  for (const name of domains) {
    const certificate = await peerCertificate(port, name, root)
    assert.match(certificate.subjectaltname ?? '', new RegExp(`DNS:${name.replace('.', '\\.')}`))
    await talk(port, name, root)
  }
  await assert.rejects(peerCertificate(port, 'a.localhost', (await import('../helpers/certs.js')).makeCa().pem), /certificate/i, 'a client trusting another root refuses it')
  assert.deepEqual(readdirSync(cache).sort(), ['a.localhost', 'account.key.pem', 'b.localhost'])
  await server.shutdown()

  // a restart reuses the cache without contacting the CA: point it at a directory that does not answer
  const offline = await startAcme(cache, { acmeDirectory: 'https://127.0.0.1:9/dir' })
  assert.ok(offline.certificates().every((status) => status.notAfter !== null && status.failures === 0))
  await talk(offline.address.port, 'b.localhost', root)
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.ok(offline.certificates().every((status) => status.failures === 0 && !status.issuing), 'nothing was issued')
  await offline.shutdown()
})

test('renewal swaps the certificate without a restart while a client stays connected; --redirect keeps answering http-01', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'mles-acme-cache-'))
  // every certificate counts as due: each check renews
  // with --redirect on the same port, which must still answer the http-01 challenges
  const server = await startAcme(cache, { domains: ['a.localhost'], redirect: true, acme: { ...fastAcme, renewBeforeDays: 100_000, checkIntervalMs: 700 } })
  await waitFor(() => server.certificates()[0].notAfter !== null, 'a certificate', 20_000)
  const redirect = await get(httpPort, '/page', { host: 'a.localhost' })
  assert.equal(redirect.status, 301)
  assert.equal(redirect.headers.location, `https://a.localhost:${server.address.port}/page`)
  const root = await pebble.issuingRoot()
  const port = server.address.port
  const url = `wss://127.0.0.1:${port}/`
  const member = await TestClient.join(url, { uid: 'stays', channel: 'renewal' }, { ca: root, servername: 'a.localhost' })
  const first = (await peerCertificate(port, 'a.localhost', root)).serialNumber
  let current = first
  const deadline = Date.now() + 20_000
  while (current === first && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200))
    current = (await peerCertificate(port, 'a.localhost', root)).serialNumber
  }
  assert.notEqual(current, first, 'a new certificate is served')
  const late = await TestClient.join(url, { uid: 'late', channel: 'renewal' }, { ca: root, servername: 'a.localhost' })
  assert.equal(JSON.parse((await late.next()).text).uid, 'stays')
  await new Promise((resolve) => setTimeout(resolve, 50))
  late.send('after renewal')
  assert.equal((await member.next()).text, 'after renewal', 'the client connected before the renewal is still connected')
  member.close()
  late.close()
  await server.shutdown()
})

test('a CA that fails never crashes the server: it logs, retries with backoff and keeps serving', async () => {
  const server = await startAcme(mkdtempSync(join(tmpdir(), 'mles-acme-cache-')), { acmeDirectory: 'https://127.0.0.1:9/dir' })
  await waitFor(() => server.certificates().every((status) => status.failures >= 2), 'two failed attempts per name', 20_000)
  assert.ok(server.certificates().every((status) => status.notAfter === null))
  await assert.rejects(peerCertificate(server.address.port, 'a.localhost', await pebble.issuingRoot()))
  assert.equal(server.metrics().active_connections, 0)
  await server.shutdown()
})
