import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeCa, issue } from '../helpers/certs.js'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { makeWebRoot, startStandalone } from '../helpers/standalone.js'
import { peerCertificate } from '../helpers/tls-client.js'

const www = makeWebRoot({ 'a.test/index.html': '<h1>A</h1>' })

test('own certificate: wss and https with a client trusting only its CA; reloaded without dropping members', async () => {
  const ca = makeCa()
  const first = issue(ca, ['a.test', 'localhost'])
  const dir = mkdtempSync(join(tmpdir(), 'mles-tls-'))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  copyFileSync(first.cert, cert)
  copyFileSync(first.key, key)
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, tls: 'files', tlsCert: cert, tlsKey: key })
  const port = server.address.port
  assert.equal(server.url, `https://a.test:${port}/`)
  const before = await peerCertificate(port, 'a.test', ca.pem)
  const url = `wss://127.0.0.1:${port}/`
  const member = await TestClient.join(url, { uid: 'a', channel: 'c' }, { ca: ca.pem, servername: 'a.test' })
  const response = await fetch(`https://127.0.0.1:${port}/`).catch((error: Error) => error)
  assert.ok(response instanceof Error, 'a client that does not trust the CA is refused')

  const second = issue(ca, ['a.test', 'localhost'])
  copyFileSync(second.cert, cert)
  copyFileSync(second.key, key)
  await server.reloadCertificates()
  const after = await peerCertificate(port, 'a.test', ca.pem)
  assert.notEqual(after.serialNumber, before.serialNumber, 'new connections get the new certificate')
  const late = await TestClient.join(url, { uid: 'b', channel: 'c' }, { ca: ca.pem, servername: 'a.test' })
  assert.equal((await late.next()).text, '{"uid":"a","channel":"c"}')
  await new Promise((resolve) => setTimeout(resolve, 50))
  late.send('after the reload')
  assert.equal((await member.next()).text, 'after the reload', 'the member connected before the reload is still there')
  member.close()
  late.close()
})

test('a bad certificate file is refused at start, and a bad reload keeps the old one', async () => {
  const ca = makeCa()
  const good = issue(ca, ['a.test'])
  const other = issue(makeCa('other'), ['a.test'])
  await assert.rejects(startStandalone({ domains: ['a.test'], wwwroot: www, tls: 'files', tlsCert: good.cert, tlsKey: other.key }), /cannot use .* with .*/)
  const dir = mkdtempSync(join(tmpdir(), 'mles-tls-'))
  copyFileSync(good.cert, join(dir, 'cert.pem'))
  copyFileSync(good.key, join(dir, 'key.pem'))
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, tls: 'files', tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') })
  const before = await peerCertificate(server.address.port, 'a.test', ca.pem)
  copyFileSync(other.key, join(dir, 'key.pem'))
  await assert.rejects(server.reloadCertificates())
  assert.equal((await peerCertificate(server.address.port, 'a.test', ca.pem)).serialNumber, before.serialNumber)
})

test('mles --tls-cert/--tls-key reloads on SIGHUP', async () => {
  const ca = makeCa()
  const first = issue(ca, ['a.test'])
  const dir = mkdtempSync(join(tmpdir(), 'mles-tls-'))
  copyFileSync(first.cert, join(dir, 'cert.pem'))
  copyFileSync(first.key, join(dir, 'key.pem'))
  const cli = runCli(['-d', 'a.test', '-w', www, '--host', '127.0.0.1', '--port', '0', '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')])
  const [, port] = await cli.waitFor(/serving https:\/\/a\.test:(\d+)\//)
  const before = await peerCertificate(Number(port), 'a.test', ca.pem)
  const second = issue(ca, ['a.test'])
  copyFileSync(second.cert, join(dir, 'cert.pem'))
  copyFileSync(second.key, join(dir, 'key.pem'))
  cli.child.kill('SIGHUP')
  await cli.waitFor(/certificate reloaded/)
  assert.notEqual((await peerCertificate(Number(port), 'a.test', ca.pem)).serialNumber, before.serialNumber)
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
})
