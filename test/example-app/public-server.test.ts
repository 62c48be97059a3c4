// The `mles` command's limits for a public server, as a user runs it:
// --max-connections, --per-ip-channel-limit behind --trust-proxy, IPv6 keys
// by /64, and the log: request lines at debug unless --access-log, refusals
// at warn once a minute.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runCli, type RunningCli } from '../helpers/cli.js'
import { refusedUpgrade, TestClient } from '../helpers/client.js'
import { get, makeWebRoot } from '../helpers/standalone.js'
import { waitFor } from '../helpers/server.js'

const www = makeWebRoot({ 'localhost/index.html': 'hello' })

async function start (args: string[]): Promise<{ cli: RunningCli, url: string, port: number }> {
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--metrics-interval', '0', ...args], { MLES_LOG_LEVEL: 'info' })
  const [, port] = await cli.waitFor(/serving http:\/\/localhost:(\d+)\//)
  return { cli, url: `ws://127.0.0.1:${port}/`, port: Number(port) }
}

const logLines = (cli: RunningCli): Array<{ level: number, msg: string }> =>
  cli.stdout().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number, msg: string })

const as = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } })

test('by default a join storm logs no line per request; refusals are logged at warn, once a minute per kind', async () => {
  const { cli, url, port } = await start(['--max-connections', '5'])
  const clients: TestClient[] = []
  for (let i = 0; i < 5; i++) clients.push(await TestClient.join(url, { uid: `u${i}`, channel: 'c' }))
  assert.equal((await get(port, '/')).status, 200)
  assert.equal((await get(port, '/missing')).status, 404)
  for (let i = 0; i < 3; i++) {
    const refused = await refusedUpgrade(url)
    assert.equal(refused.status, 503)
    assert.equal(refused.headers['retry-after'], '10')
  }
  await waitFor(() => logLines(cli).some((line) => line.msg.includes('maxConnections')), 'the refusal logged')
  const lines = logLines(cli)
  assert.deepEqual(lines.filter((line) => /incoming request|request completed|not found/.test(line.msg)), [], 'no request lines at info')
  const refusals = lines.filter((line) => line.msg.includes('maxConnections'))
  assert.equal(refusals.length, 1, 'three refusals, one line')
  assert.equal(refusals[0].level, 40)
  for (const client of clients) client.close()
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
})

test('--access-log logs every request and upgrade at info', async () => {
  const { cli, url, port } = await start(['--access-log'])
  const client = await TestClient.join(url, { uid: 'u', channel: 'c' })
  assert.equal((await get(port, '/')).status, 200)
  await waitFor(() => logLines(cli).filter((line) => line.msg === 'incoming request').length >= 2, 'the request lines')
  assert.ok(logLines(cli).filter((line) => line.msg === 'incoming request').every((line) => line.level === 30))
  client.close()
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
})

test('behind --trust-proxy: --per-ip-channel-limit per client address, and the per-IP limit keys IPv6 by /64', async () => {
  const { cli, url } = await start(['--trust-proxy', '127.0.0.1', '--per-ip-channel-limit', '2', '--per-ip-limit', '4'])
  const clients: TestClient[] = []
  for (const channel of ['a', 'b']) clients.push(await TestClient.join(url, { uid: 'u', channel }, as('192.0.2.10')))
  const third = await TestClient.join(url, { uid: 'u', channel: 'c' }, as('192.0.2.10'))
  assert.deepEqual(await third.closedWithin(), { code: 1013, reason: 'try again later: too many new channels from this address' })
  clients.push(await TestClient.join(url, { uid: 'u', channel: 'c' }, as('192.0.2.11')))

  for (let i = 1; i <= 4; i++) clients.push(await TestClient.connect(url, 'mles-websocket', as(`2001:db8:77:1::${i.toString(16)}${i}`)))
  assert.equal((await refusedUpgrade(url, 'mles-websocket', as('2001:db8:77:1:dead:beef:0:1'))).status, 429, 'the same /64')
  clients.push(await TestClient.connect(url, 'mles-websocket', as('2001:db8:77:2::1')))
  for (const client of clients) client.close()
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
})
