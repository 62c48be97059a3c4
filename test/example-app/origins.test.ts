import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseCommandLine } from '../../example-app/config.js'
import { standaloneOrigins } from '../../example-app/origins.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'
import { makeWebRoot, startStandalone } from '../helpers/standalone.js'

const www = makeWebRoot({ 'a.test/index.html': '<h1>A</h1>' })

function allows (check: ReturnType<typeof standaloneOrigins>, origin: string): boolean {
  if (Array.isArray(check)) return check.includes('*')
  return (check as (origin: string) => boolean)(origin)
}

test('mles allows its own pages by default: https on the TLS port; with --no-tls http on its port and https on 443 (a proxy in front)', () => {
  const tls = standaloneOrigins({ domains: ['a.test', 'b.test'], tls: 'acme' }, () => 443)
  for (const origin of ['https://a.test', 'https://B.test', 'https://a.test:443']) assert.ok(allows(tls, origin), origin)
  for (const origin of ['http://a.test', 'https://a.test:8443', 'https://c.test', 'null']) assert.ok(!allows(tls, origin), origin)

  const other = standaloneOrigins({ domains: ['a.test'], tls: 'files' }, () => 8443)
  assert.ok(allows(other, 'https://a.test:8443'))
  assert.ok(!allows(other, 'https://a.test'))

  const plain = standaloneOrigins({ domains: ['localhost', '127.0.0.1', '::1'], tls: 'none' }, () => 8080)
  for (const origin of ['http://localhost:8080', 'http://127.0.0.1:8080', 'http://[::1]:8080', 'https://localhost']) assert.ok(allows(plain, origin), origin)
  for (const origin of ['http://localhost', 'http://localhost:8081', 'https://localhost:8080']) assert.ok(!allows(plain, origin), origin)

  const extra = standaloneOrigins({ domains: ['a.test'], tls: 'acme', allowedOrigins: ['https://app.example:3000'] }, () => 443)
  assert.ok(allows(extra, 'https://app.example:3000'))
  assert.ok(allows(extra, 'https://a.test'))
  assert.ok(!allows(extra, 'https://app.example'))
  assert.deepEqual(standaloneOrigins({ domains: ['a.test'], tls: 'acme', allowedOrigins: ['https://x.example', '*'] }, () => 443), ['*'])
})

test('--allowed-origin: repeatable, checked, "*" accepted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mles-www-'))
  const parsed = parseCommandLine(['--domains', 'a.test', '--wwwroot', dir, '--allowed-origin', 'https://x.example', '--allowed-origin', '*'], {}, '1.0.0')
  assert.equal(parsed.kind, 'config')
  if (parsed.kind === 'config') assert.deepEqual(parsed.config.allowedOrigins, ['https://x.example', '*'])
  const bad = parseCommandLine(['--domains', 'a.test', '--wwwroot', dir, '--allowed-origin', 'x.example'], {}, '1.0.0')
  assert.equal(bad.kind, 'exit')
  if (bad.kind === 'exit') {
    assert.equal(bad.code, 2)
    assert.match(bad.output, /^mles: option '--allowed-origin <origin...>' argument 'x.example' is invalid\. must be an origin such as https:\/\/example.com/)
    assert.equal(bad.output.trim().split('\n').length, 1)
  }
})

test('the running mles refuses pages of other origins with 403 and takes its own, on the port it listens on', async () => {
  const server = await startStandalone({ domains: ['localhost', '127.0.0.1'], wwwroot: www })
  const port = server.address.port
  const url = `ws://127.0.0.1:${port}/`
  const own = await TestClient.connect(url, 'mles-websocket', { headers: { origin: `http://localhost:${port}` } })
  own.close()
  const bare = await TestClient.connect(url) // no Origin: a non-browser client
  bare.close()
  assert.equal((await refusedUpgrade(url, 'mles-websocket', { headers: { origin: 'https://evil.example' } })).status, 403)
  assert.equal((await refusedUpgrade(url, 'mles-websocket', { headers: { origin: `http://localhost:${port + 1}` } })).status, 403)
  assert.equal(server.app.mles.metrics().rejected_origin, 2)

  const open = await startStandalone({ domains: ['localhost'], wwwroot: www, allowedOrigins: ['*'] })
  const anyPage = await TestClient.connect(`ws://127.0.0.1:${open.address.port}/`, 'mles-websocket', { headers: { origin: 'https://evil.example' } })
  anyPage.close()
})
