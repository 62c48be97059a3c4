import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { MlesClient } from '../../src/client/index.js'
import { runCli, type RunningCli } from '../helpers/cli.js'
import { redisForTests } from '../helpers/redis.js'
import { sleep, waitFor } from '../helpers/server.js'

const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
const redis = redisForTests()

async function startWorkers (count: number, extra: string[] = [], logLevel = 'warn'): Promise<{ cli: RunningCli, port: number }> {
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--workers', String(count), '--redis', redis.url, '--per-ip-limit', '0', ...extra], { MLES_LOG_LEVEL: logLevel })
  const match = await cli.waitFor(/serving http:\/\/localhost:(\d+)\/.* with (\d+) workers/, 30_000)
  assert.equal(match[2], String(count))
  return { cli, port: Number(match[1]) }
}

/** Nodes (worker processes) connected to Redis, from their connection names. */
async function nodesInRedis (): Promise<number> {
  const list = await redis.inspector.client('LIST') as string
  return new Set([...list.matchAll(/name=mles:([0-9a-f-]+)/g)].map((match) => match[1])).size
}

test('--workers: more than one needs --redis', async () => {
  for (const [args, message] of [
    [['-d', 'localhost', '-w', www, '--no-tls', '--workers', '2'], /--workers 2 needs --redis URL/],
    [['-d', 'localhost', '-w', www, '--no-tls', '--workers', '0'], /--workers.*from 1 to 256, or auto/],
    [['-d', 'localhost', '-w', www, '--no-tls', '--workers', 'many'], /--workers.*from 1 to 256, or auto/],
    [['-d', 'localhost', '-w', www, '--no-tls', '--redis', 'http://x'], /--redis.*redis:\/\/ or rediss:\/\/ URL/],
    [['-d', 'localhost', '-w', www, '--no-tls', '--redis', 'redis://x', '--history-dir', '/tmp/x'], /--history-dir cannot be combined with --redis/]
  ] as const) {
    const cli = runCli([...args])
    assert.equal(await cli.exited, 2, args.join(' '))
    assert.equal(cli.stderr().trim().split('\n').length, 1, cli.stderr())
    assert.match(cli.stderr(), message)
  }
})

test('--redis with an unreachable Redis: one error line, exit 1', async () => {
  const cli = runCli(['-d', 'localhost', '-w', www, '--no-tls', '--host', '127.0.0.1', '--port', '0', '--redis', 'redis://127.0.0.1:1'], { MLES_LOG_LEVEL: 'silent' })
  assert.equal(await cli.exited, 1)
  assert.match(cli.stderr(), /^mles: .*cannot reach Redis at redis:\/\/127\.0\.0\.1:1/)
})

test('--workers 2: two processes share the port and one channel space; SIGUSR2 replaces them with no downtime and no lost history', async () => {
  const { cli, port } = await startWorkers(2)
  const url = `ws://127.0.0.1:${port}/`
  try {
    assert.equal(await nodesInRedis(), 2)

    // Members land on both workers (round-robin) and all hear each other.
    const clients = Array.from({ length: 6 }, (_, i) => new MlesClient(url, { uid: `u${i}`, channel: 'workers', reconnect: { minDelayMs: 50, maxDelayMs: 500 } }))
    const received = clients.map(() => [] as string[])
    const reopened = clients.map(() => 0)
    clients.forEach((client, i) => {
      client.on('message', (message) => { received[i].push(String(message.data)) })
      client.on('open', ({ reconnect }) => { if (reconnect) reopened[i]++ })
    })
    await waitFor(() => clients.every((client) => client.state === 'open'), 'clients open', 10_000)
    await sleep(300)
    const sendRound = (round: string): void => { clients.forEach((client, i) => { client.send(`${round}:u${i}`) }) }
    const expectRound = async (round: string): Promise<void> => {
      await waitFor(() => received.every((texts, i) => clients.every((_, j) => j === i || texts.includes(`${round}:u${j}`))), `every client to hear round ${round}`, 15_000)
    }
    sendRound('before')
    await expectRound('before')

    // Keep opening connections while the workers are replaced: every one must be accepted.
    let refused = 0
    const reasons = new Set<string>()
    let accepted = 0
    let probing = true
    const probe = (async () => {
      while (probing) {
        await new Promise<void>((resolve) => {
          const ws = new WebSocket(url, 'mles-websocket')
          ws.once('open', () => { accepted++; ws.terminate(); resolve() })
          ws.once('error', (error) => { refused++; reasons.add(error.message); resolve() })
        })
        await sleep(20)
      }
    })()
    const pids = new Set<string>()
    for (const match of cli.stdout().matchAll(/primary (\d+)/g)) pids.add(match[1])
    const primary = Number([...pids][0])
    process.kill(primary, 'SIGUSR2')
    await cli.waitFor(/workers replaced \(([\d, ]+)\)/, 60_000)
    probing = false
    await probe
    assert.equal(refused, 0, `connections refused during the replacement (${accepted} accepted): ${[...reasons].join('; ')}`)
    assert.ok(accepted > 5)
    await waitFor(() => clients.every((client) => client.state === 'open'), 'clients back', 15_000)
    assert.equal(cli.child.exitCode, null)
    // The new workers were all up before the old ones went: each member was cut once, never moved to an old worker and cut again.
    await sleep(500)
    assert.deepEqual(reopened, clients.map(() => 1))

    // Everyone is back on the new workers: the channel still spans them.
    await sleep(300)
    sendRound('after')
    await expectRound('after')
    for (const [i, texts] of received.entries()) {
      assert.equal(new Set(texts).size, texts.length, `client u${i} got no frame twice`)
    }

    // A newcomer finds the whole history, from before the replacement too.
    const newcomer = new MlesClient(url, { uid: 'newcomer', channel: 'workers' })
    const history: string[] = []
    newcomer.on('message', (message) => { history.push(String(message.data)) })
    await waitFor(() => history.length >= 12, 'the newcomer\'s history', 10_000)
    for (const round of ['before', 'after']) {
      for (let i = 0; i < 6; i++) assert.ok(history.includes(`${round}:u${i}`), `history has ${round}:u${i}`)
    }
    await Promise.all([...clients, newcomer].map(async (client) => { await client.close() }))
    assert.equal(await nodesInRedis(), 2)
  } finally {
    cli.child.kill('SIGTERM')
    assert.equal(await cli.exited, 0)
  }
})

test('--workers 2 --metrics-listen: one scrape of the primary reports the connections of every worker, summed and per worker; SIGUSR1 on the primary logs their sum', async () => {
  const { createServer } = await import('node:net')
  const free = createServer()
  await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve))
  const metricsPort = (free.address() as { port: number }).port
  await new Promise((resolve) => free.close(resolve))
  const { cli, port } = await startWorkers(2, ['--metrics-listen', `127.0.0.1:${metricsPort}`], 'info')
  const clients: WebSocket[] = []
  try {
    await cli.waitFor(new RegExp(`metrics of all workers at http://127.0.0.1:${metricsPort}/metrics`))
    // 2 × 4 connections, handed to the workers in turn.
    for (let i = 0; i < 8; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'mles-websocket')
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
      ws.send(JSON.stringify({ uid: `m${i}`, channel: 'scraped' }))
      clients.push(ws)
    }
    let text = ''
    for (let attempt = 0; attempt < 50 && !/^mles_active_connections 8$/m.test(text); attempt++) {
      text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
      await sleep(100)
    }
    assert.match(text, /^mles_active_connections 8$/m, 'summed over the workers')
    const perWorker = [...text.matchAll(/^mles_worker_active_connections\{worker="(\d+)"\} (\d+)$/gm)].map((match) => Number(match[2]))
    assert.equal(perWorker.length, 2, 'one series per worker')
    assert.equal(perWorker.reduce((sum, value) => sum + value, 0), 8)
    assert.ok(perWorker.every((value) => value > 0), `both workers hold connections (${perWorker.join(' + ')})`)
    assert.match(text, /^process_cpu_user_seconds_total \d/m, 'process metrics, summed too')

    const before = cli.stdout().length
    process.kill(cli.child.pid as number, 'SIGUSR1')
    await waitFor(() => cli.stdout().slice(before).includes('"workers":2'), 'the metrics line of the whole server', 5000)
    const lines = cli.stdout().slice(before).split('\n').filter((line) => line.includes('mles metrics:'))
    assert.equal(lines.length, 1, 'one line, from the primary, not one per worker')
    const logged = JSON.parse(lines[0]) as { level: number, msg: string, workers: number, metrics: Record<string, number> }
    assert.equal(logged.level, 30)
    assert.match(logged.msg, /^mles metrics: active_connections=8 /)
    assert.equal(logged.metrics.active_connections, 8)
  } finally {
    for (const ws of clients) ws.close()
    cli.child.kill('SIGTERM')
    await cli.exited
  }
})
