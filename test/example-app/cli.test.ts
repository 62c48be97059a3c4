import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type AddressInfo } from 'node:net'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { get } from '../helpers/standalone.js'

const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))

test('bad flags: one error line on stderr, exit code 2; --version and --help exit 0', async () => {
  for (const args of [['--bogus'], ['-d', 'localhost'], ['-d', 'localhost', '-w', www, '--port', 'x']]) {
    const cli = runCli(args)
    assert.equal(await cli.exited, 2, args.join(' '))
    assert.equal(cli.stderr().trim().split('\n').length, 1, cli.stderr())
    assert.match(cli.stderr(), /^mles: /)
    assert.equal(cli.stdout(), '')
  }
  const version = runCli(['--version'])
  assert.equal(await version.exited, 0)
  assert.match(version.stdout(), /^\d+\.\d+\.\d+\n$/)
  const help = runCli(['--help'])
  assert.equal(await help.exited, 0)
  assert.match(help.stdout(), /--domains/)
})

test('a port it cannot bind: one error line, exit code 1', async () => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  const { port } = taken.address() as AddressInfo
  const cli = runCli(['-d', 'localhost', '-w', www, '--no-tls', '--host', '127.0.0.1', '--port', String(port)], { MLES_LOG_LEVEL: 'silent' })
  assert.equal(await cli.exited, 1)
  assert.equal(cli.stderr(), `mles: cannot listen on 127.0.0.1:${port} for HTTP: the address is already in use\n`)
  taken.close()
})

test('the npm start server: demo page and Mles on one port, every address; SIGTERM closes members with 1001 and exits 0', async () => {
  // npm start runs exactly these flags on port 8080; here port 0.
  const cli = runCli(['--no-tls', '--port', '0', '--domains', 'localhost', '--domains', '127.0.0.1', '--wwwroot', www])
  const [, url, port] = await cli.waitFor(/serving (http:\/\/localhost:(\d+)\/)/)
  assert.ok(url.startsWith('http://localhost:'))
  const page = await get(Number(port), '/', { host: `localhost:${port}` })
  assert.equal(page.status, 200)
  assert.match(page.body.toString(), /mles-websocket/)
  assert.equal((await get(Number(port), '/', { host: `127.0.0.1:${port}` })).status, 200, 'the 127.0.0.1 alias folder')
  // A listen backlog of 4096 (as far as net.core.somaxconn allows), not Node's 511: a reconnect storm of thousands must not overflow it.
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'))
  const listening = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim().split('\n')
  assert.ok(listening.length >= 1, 'ss lists the listening socket')
  for (const line of listening) assert.equal(Number(line.trim().split(/\s+/)[2]), Math.min(4096, somaxconn), line)
  // dual stack: IPv4 and IPv6 loopback both reach it
  const v4 = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'v4', channel: 'demo' })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const v6 = await TestClient.join(`ws://[::1]:${port}/`, { uid: 'v6', channel: 'demo' })
  assert.equal((await v6.next()).text, '{"uid":"v4","channel":"demo"}')
  await new Promise((resolve) => setTimeout(resolve, 100))
  v4.send('hello over IPv4')
  assert.equal((await v6.next()).text, 'hello over IPv4')

  cli.child.kill('SIGUSR1')
  await cli.waitFor(/mles metrics: active_connections=2 .*dropped_by_ip=0/)
  const started = Date.now()
  cli.child.kill('SIGTERM')
  assert.equal((await v4.closedWithin(5000)).code, 1001)
  assert.equal((await v6.closedWithin(5000)).code, 1001)
  assert.equal(await cli.exited, 0)
  assert.ok(Date.now() - started < 5000)
})

test('MLES_KEY is honoured and MLES_LOG_LEVEL sets the log level', async () => {
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www], { MLES_KEY: 'k', MLES_LOG_LEVEL: 'warn' })
  const [, port] = await cli.waitFor(/serving http:\/\/localhost:(\d+)\//)
  const refused = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'u', channel: 'c' })
  assert.equal((await refused.closedWithin()).reason, 'authentication failed')
  await get(Number(port), '/')
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
  assert.ok(!cli.stdout().includes('"level":30'), 'no info lines at warn level')
})

test('npx mles works from the project folder (package bin)', async () => {
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const { stdout } = await promisify(execFile)('npx', ['--no-install', 'mles', '--version'], { cwd: root })
  assert.match(stdout, /^\d+\.\d+\.\d+\n$/)
})
