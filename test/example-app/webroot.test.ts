import { test } from 'node:test'
import assert from 'node:assert/strict'
import { symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { hostDomain, staticPath } from '../../example-app/webroot.js'
import { get, makeWebRoot, startStandalone } from '../helpers/standalone.js'
import { TestClient } from '../helpers/client.js'

const big = 'lorem ipsum dolor sit amet '.repeat(400)
const root = makeWebRoot({
  'a.test/index.html': '<h1>A</h1>',
  'a.test/app.js': 'console.log(1)',
  'a.test/style.css': 'body{}',
  'a.test/data.json': '{"a":1}',
  'a.test/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>',
  'a.test/img.png': Buffer.from([0x89, 0x50, 0x4e, 0x47]),
  'a.test/big.txt': big,
  'a.test/docs/index.html': '<h1>docs</h1>',
  'a.test/.secret': 'dotfile',
  'b.test/index.html': '<h1>B</h1>',
  'b.test/only-b.txt': 'b only',
  'outside.txt': 'outside the domain folders'
})
symlinkSync(join(root, 'a.test'), join(root, 'alias.test'))

test('hostDomain and staticPath', () => {
  assert.equal(hostDomain('A.Test:8443'), 'a.test')
  assert.equal(hostDomain('a.test.'), 'a.test')
  assert.equal(hostDomain('[::1]:80'), '[::1]')
  assert.equal(hostDomain(undefined), null)
  assert.deepEqual(staticPath('/'), { ok: true, path: 'index.html' })
  assert.deepEqual(staticPath('/docs/'), { ok: true, path: 'docs/index.html' })
  assert.deepEqual(staticPath('/a%20b.txt?x=1'), { ok: true, path: 'a b.txt' })
  assert.deepEqual(staticPath('//etc/passwd'), { ok: true, path: 'etc/passwd' }, 'an absolute path stays inside')
  for (const [url, status] of [['/../x', 403], ['/%2e%2e/x', 403], ['/a/%2e%2e%2f%2e%2e%2fx', 403], ['/..%2fx', 403], ['/a\\..\\x', 400],
    ['/%5c..%5cx', 400], ['/a%00.html', 400], ['/%E0%A4%A', 400], ['/./x', 403]] as const) {
    assert.deepEqual(staticPath(url), { ok: false, status }, url)
  }
})

test('each configured Host gets its own folder; unknown hosts get 404 and never another folder', async () => {
  const server = await startStandalone({ domains: ['a.test', 'b.test', 'alias.test'], wwwroot: root })
  const port = server.address.port
  assert.equal((await get(port, '/', { host: 'a.test' })).body.toString(), '<h1>A</h1>')
  assert.equal((await get(port, '/', { host: 'B.TEST:1234' })).body.toString(), '<h1>B</h1>', 'case-insensitive, port stripped')
  assert.equal((await get(port, '/', { host: 'alias.test' })).body.toString(), '<h1>A</h1>', 'a symlinked domain folder')
  assert.equal((await get(port, '/only-b.txt', { host: 'a.test' })).status, 404)
  assert.equal((await get(port, '/only-b.txt', { host: 'b.test' })).body.toString(), 'b only')
  for (const host of ['c.test', 'localhost', '127.0.0.1', 'a.test.evil', '..', 'a.test/../b.test']) {
    const answer = await get(port, '/index.html', { host })
    assert.equal(answer.status, 404, host)
    assert.ok(!answer.body.toString().includes('<h1>'), host)
  }
  assert.equal((await get(port, '/docs/', { host: 'a.test' })).body.toString(), '<h1>docs</h1>')
  assert.equal((await get(port, '/.secret', { host: 'a.test' })).status, 404, 'dotfiles are not served')
  assert.equal((await get(port, '/missing.html', { host: 'a.test' })).status, 404)
  await server.shutdown()
})

test('no request path escapes the domain folder', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: root })
  const port = server.address.port
  for (const path of ['/../outside.txt', '/%2e%2e/outside.txt', '/%2E%2E%2Foutside.txt', '/..%2f..%2foutside.txt', '/docs/../../outside.txt',
    '/..\\outside.txt', '/%5c..%5coutside.txt', '//../outside.txt', '/../b.test/only-b.txt', '/%2e%2e%2fb.test%2fonly-b.txt',
    '/index.html%00.png', '/%00', '/' + root + '/outside.txt', '/..', '/%2e%2e']) {
    const answer = await get(port, path, { host: 'a.test' })
    assert.ok([400, 403, 404].includes(answer.status), `${path}: ${answer.status}`)
    assert.ok(!answer.body.toString().includes('outside the domain') && !answer.body.toString().includes('b only'), path)
  }
  await server.shutdown()
})

test('content types, index.html at /, and JSON open to every origin', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: root })
  const port = server.address.port
  const types: Record<string, RegExp> = {
    '/': /^text\/html/, '/app.js': /javascript/, '/style.css': /^text\/css/, '/data.json': /^application\/json/, '/logo.svg': /^image\/svg\+xml/, '/img.png': /^image\/png/
  }
  for (const [path, type] of Object.entries(types)) {
    const answer = await get(port, path, { host: 'a.test' })
    assert.equal(answer.status, 200, path)
    assert.match(String(answer.headers['content-type']), type, path)
  }
  assert.equal((await get(port, '/data.json', { host: 'a.test' })).headers['access-control-allow-origin'], '*')
  assert.equal((await get(port, '/app.js', { host: 'a.test' })).headers['access-control-allow-origin'], undefined)
  assert.equal((await get(port, '/', { host: 'a.test' }, 'HEAD')).status, 200)
  await server.shutdown()
})

test('br and gzip by Accept-Encoding; the compressed body is cached until the file changes', async () => {
  const www = makeWebRoot({ 'a.test/big.txt': big, 'a.test/tiny.txt': 'tiny' })
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, compressionCacheMb: 1 })
  const port = server.address.port
  const br = await get(port, '/big.txt', { host: 'a.test', 'accept-encoding': 'br, gzip' })
  assert.equal(br.headers['content-encoding'], 'br')
  assert.equal(brotliDecompressSync(br.body).toString(), big)
  assert.ok(br.body.length < big.length / 10)
  assert.equal(server.metrics().static_compressions, 1)
  const again = await get(port, '/big.txt', { host: 'a.test', 'accept-encoding': 'br' })
  assert.ok(again.body.equals(br.body))
  assert.equal(server.metrics().static_compressions, 1, 'a repeated request is not compressed again')
  assert.equal(server.metrics().static_cache_hits, 1)
  const gz = await get(port, '/big.txt', { host: 'a.test', 'accept-encoding': 'gzip' })
  assert.equal(gz.headers['content-encoding'], 'gzip')
  assert.equal(gunzipSync(gz.body).toString(), big)
  assert.equal(server.metrics().static_compressions, 2, 'one cached body per encoding')
  const plain = await get(port, '/big.txt', { host: 'a.test' })
  assert.equal(plain.headers['content-encoding'], undefined)
  assert.equal(plain.body.toString(), big)
  // files under 1 KiB are not cached (on-the-fly compression may still apply)
  await get(port, '/tiny.txt', { host: 'a.test', 'accept-encoding': 'br' })
  assert.equal(server.metrics().static_compressions, 2)
  // a new mtime invalidates the cached body
  const changed = big.replace('lorem', 'LOREM')
  writeFileSync(join(www, 'a.test/big.txt'), changed)
  const later = new Date(Date.now() + 5000)
  utimesSync(join(www, 'a.test/big.txt'), later, later)
  const fresh = await get(port, '/big.txt', { host: 'a.test', 'accept-encoding': 'br' })
  assert.equal(brotliDecompressSync(fresh.body).toString(), changed)
  assert.equal(server.metrics().static_compressions, 3)
  await server.shutdown()
})

test('-C 0: no cache, @fastify/compress compresses on the fly every time', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: root, compressionCacheMb: 0 })
  const port = server.address.port
  for (let i = 0; i < 2; i++) {
    const br = await get(port, '/big.txt', { host: 'a.test', 'accept-encoding': 'br' })
    assert.equal(br.headers['content-encoding'], 'br')
    assert.equal(brotliDecompressSync(br.body).toString(), big)
  }
  assert.equal(server.metrics().static_compressions, 0)
  await server.shutdown()
})

test('--filelimit 1: many concurrent requests all succeed, one file open at a time', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: root, fileLimit: 1, compressionCacheMb: 0 })
  const port = server.address.port
  const answers = await Promise.all(Array.from({ length: 60 }, async (_, i) => await get(port, i % 2 === 0 ? '/big.txt' : '/app.js', { host: 'a.test' })))
  assert.ok(answers.every((answer) => answer.status === 200))
  assert.ok(answers.filter((_, i) => i % 2 === 0).every((answer) => answer.body.toString() === big))
  assert.equal(server.metrics().static_peak_open_files, 1)
  await server.shutdown()
})

test('the Mles endpoint lives at / beside the web root', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: root })
  const url = `ws://127.0.0.1:${server.address.port}/`
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  assert.equal((await b.next()).text, '{"uid":"a","channel":"c"}')
  a.close()
  b.close()
  await server.shutdown()
})
