// ACME under `mles --workers 2 --redis`, against Pebble: the primary orders
// each certificate once and every worker serves it; a worker killed and
// replaced serves TLS again at once.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { freePort, startPebble, type Pebble } from '../helpers/pebble.js'
import { redisForTests } from '../helpers/redis.js'
import { sleep, waitFor } from '../helpers/server.js'
import { get, makeWebRoot } from '../helpers/standalone.js'
import { peerCertificate } from '../helpers/tls-client.js'

const redis = redisForTests()
const domains = ['a.localhost', 'b.localhost']
const www = makeWebRoot({ 'a.localhost/index.html': 'A', 'b.localhost/index.html': 'B' })
let pebble: Pebble | undefined
after(async () => { await pebble?.stop() })

/** The worker processes of the primary `pid` (node:cluster forks of the same script; tsx's esbuild service is not one). */
function workerPids (pid: number): number[] {
  return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)]).toString().trim().split('\n')
    .filter((line) => line.includes('cli.ts')).map((line) => Number(line.trim().split(/\s+/)[0]))
}

async function perWorker (metricsPort: number): Promise<number[]> {
  const answer = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  const text = await answer.text()
  assert.equal(answer.status, 200, text)
  return [...text.matchAll(/^mles_worker_active_connections\{worker="\d+"\} (\d+)$/gm)].map((match) => Number(match[1]))
}

test('--workers 2 with ACME: each name is ordered once, by the primary; both workers serve both names; a replaced worker serves TLS at once', { timeout: 90_000 }, async () => {
  const httpPort = await freePort()
  const metricsPort = await freePort()
  pebble = await startPebble({ httpPort })
  const cache = mkdtempSync(join(tmpdir(), 'mles-acme-workers-'))
  const cli = runCli(['--host', '127.0.0.1', '--port', '0', '--http-port', String(httpPort), '-d', ...domains, '-w', www, '--workers', '2', '--redis', redis.url,
    '--acme-directory', pebble.directoryUrl, '--acme-ca-file', pebble.caFile, '--cache', cache, '-e', 'ops@example.test', '--metrics-listen', `127.0.0.1:${metricsPort}`, '--per-ip-limit', '0', '--redirect'],
  { MLES_LOG_LEVEL: 'info' })
  const clients: TestClient[] = []
  try {
    const [, port] = await cli.waitFor(/serving https:\/\/a\.localhost:(\d+)\/.* with 2 workers/, 30_000)
    await cli.waitFor(/certificate issued[^]*certificate issued/, 45_000)
    const root = await pebble.issuingRoot()
    const url = `wss://127.0.0.1:${port}/`
    for (const name of domains) {
      assert.match((await peerCertificate(Number(port), name, root)).subjectaltname ?? '', new RegExp(`DNS:${name.replace('.', '\\.')}`))
      for (let i = 0; i < 4; i++) clients.push(await TestClient.join(url, { uid: `${name}-${i}`, channel: 'tls' }, { ca: root, servername: name }))
    }
    const spread = await perWorker(metricsPort)
    assert.equal(spread.length, 2)
    assert.ok(spread.every((count) => count > 0), `both workers serve wss (${spread.join(' + ')})`)
    const issued = cli.stdout().split('\n').filter((line) => line.includes('certificate issued'))
    assert.equal(issued.length, 2, 'one order per name, not one per worker')
    // --redirect: the primary's plain HTTP listener sends browsers to the workers' https port.
    const redirected = await get(httpPort, '/page?x=1', { host: 'b.localhost' })
    assert.equal(redirected.status, 301)
    assert.equal(redirected.headers.location, `https://b.localhost:${port}/page?x=1`)

    // A worker killed: its replacement gets the certificates from the primary and serves TLS.
    const workers = workerPids(cli.child.pid as number)
    assert.equal(workers.length, 2)
    process.kill(workers[0], 'SIGKILL')
    await waitFor(() => /worker \d+ died/.test(cli.stderr()), 'the death noticed', 5000)
    // The replacement is in the metrics once it listens.
    let series: number[] = []
    for (let attempt = 0; attempt < 100 && series.length < 2; attempt++) {
      await sleep(200)
      series = await perWorker(metricsPort)
    }
    assert.equal(series.length, 2, 'a replacement listens')
    assert.equal(workerPids(cli.child.pid as number).length, 2)
    for (let i = 0; i < 6; i++) {
      const name = domains[i % 2]
      clients.push(await TestClient.join(url, { uid: `after-${i}`, channel: 'tls' }, { ca: root, servername: name }))
    }
    const after = await perWorker(metricsPort)
    assert.ok(after.length === 2 && after.every((count) => count > 0), `the new worker serves wss too (${after.join(' + ')})`)
    assert.equal(cli.stdout().split('\n').filter((line) => line.includes('certificate issued')).length, 2, 'the replacement ordered nothing')
  } finally {
    for (const client of clients) client.close()
    cli.child.kill('SIGTERM')
    await cli.exited
  }
})

test('--workers 2 with ACME: a renewal by the primary reaches both workers without a restart', { timeout: 60_000 }, async () => {
  const httpPort = await freePort()
  // A Pebble of its own: challenges go to this test's --http-port.
  const own = await startPebble({ httpPort })
  const cache = mkdtempSync(join(tmpdir(), 'mles-acme-renew-'))
  // Every certificate counts as due: each check (every 4 s) renews.
  const cli = runCli(['--host', '127.0.0.1', '--port', '0', '--http-port', String(httpPort), '-d', 'a.localhost', '-w', www, '--workers', '2', '--redis', redis.url,
    '--acme-directory', own.directoryUrl, '--acme-ca-file', own.caFile, '--cache', cache, '-e', 'ops@example.test', '--per-ip-limit', '0'],
  { MLES_LOG_LEVEL: 'info', MLES_ACME_TUNING: JSON.stringify({ renewBeforeDays: 100_000, checkIntervalMs: 4000, pollMinMs: 100, pollMaxMs: 1000, requestRetries: 2 }) })
  try {
    const [, portText] = await cli.waitFor(/serving https:\/\/a\.localhost:(\d+)\//, 30_000)
    const port = Number(portText)
    await cli.waitFor(/certificate issued/, 30_000)
    const root = await own.issuingRoot()
    const first = (await peerCertificate(port, 'a.localhost', root)).serialNumber
    const issued = (): number => cli.stdout().split('\n').filter((line) => line.includes('certificate issued')).length
    const before = issued()
    await waitFor(() => issued() > before, 'a renewal', 20_000)
    await sleep(300)
    // Four connections, handed to the two workers in turn: each presents the renewed certificate.
    const serials = []
    for (let i = 0; i < 4; i++) serials.push((await peerCertificate(port, 'a.localhost', root)).serialNumber)
    assert.ok(serials.every((serial) => serial !== first), `every worker serves the renewed certificate (${first} → ${serials.join(', ')})`)
  } finally {
    cli.child.kill('SIGTERM')
    await cli.exited
    await own.stop()
  }
})
