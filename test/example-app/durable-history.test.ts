import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseCommandLine } from '../../example-app/config.js'
import { runCli, type RunningCli } from '../helpers/cli.js'
import { TestClient, type Received } from '../helpers/client.js'
import { sleep } from '../helpers/server.js'

const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))

function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mles-durable-cli-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

test('--history-dir and --history-flush: parsed, defaulted, checked', (t) => {
  const dir = tempDir(t)
  const base = ['-d', 'localhost', '-w', www]
  const parsed = (argv: string[]): ReturnType<typeof parseCommandLine> => parseCommandLine([...base, ...argv], {}, '1.2.3')

  const plain = parsed([])
  assert.ok(plain.kind === 'config')
  assert.equal(plain.config.historyDir, undefined)
  assert.equal(plain.config.historyFlushMs, 1000)

  const relative = join('some', 'history')
  const given = parsed(['--history-dir', relative, '--history-flush', '200'])
  assert.ok(given.kind === 'config')
  assert.equal(given.config.historyDir, resolve(relative), 'made absolute; created when the server starts')
  assert.equal(given.config.historyFlushMs, 200)

  const file = join(dir, 'file')
  writeFileSync(file, 'x')
  for (const [argv, message] of [
    [['--history-dir', file], `mles: --history-dir: ${file} is not a directory\n`],
    [['--history-flush', '0'], /^mles: option '--history-flush <ms>' argument '0' is invalid\. must be an integer from 1 to 2147483647 \(see mles --help\)\n$/],
    [['--history-flush', 'soon'], /must be an integer/],
    [['--history-dir'], /argument missing/]
  ] as Array<[string[], string | RegExp]>) {
    const result = parsed(argv)
    assert.ok(result.kind === 'exit' && result.code === 2, argv.join(' '))
    assert.equal(result.output.split('\n').filter(Boolean).length, 1, result.output)
    if (typeof message === 'string') assert.equal(result.output, message)
    else assert.match(result.output, message)
  }
})

test('a directory the server cannot use: one error line, exit code 1', async (t) => {
  const dir = tempDir(t)
  const inside = join(dir, 'file', 'history')
  writeFileSync(join(dir, 'file'), 'x')
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--history-dir', inside], { MLES_LOG_LEVEL: 'silent' })
  assert.equal(await cli.exited, 1)
  assert.match(cli.stderr(), new RegExp(`^mles: fastify-mles: option "historyDir" cannot hold the history at "${inside}": ENOTDIR[^\\n]*\\n$`))
})

interface Observed {
  text: string
  at: number
}

async function startCli (dir: string, flushMs: number): Promise<{ cli: RunningCli, url: string }> {
  const cli = runCli(['--no-tls', '--host', '127.0.0.1', '--port', '0', '-d', 'localhost', '-w', www, '--history-dir', dir,
    '--history-flush', String(flushMs), '--limit', '100000', '--messages-per-second', '0', '--metrics-interval', '0'], { MLES_LOG_LEVEL: 'warn' })
  const [, port] = await cli.waitFor(/serving http:\/\/localhost:(\d+)\//)
  return { cli, url: `ws://127.0.0.1:${port}/` }
}

/** Everything the history replays to a new member: messages until none comes for a while. */
async function replay (client: TestClient): Promise<Received[]> {
  const messages: Received[] = []
  for (;;) {
    try {
      messages.push(await client.next(1000))
    } catch {
      return messages
    }
  }
}

test('kill -9 under load: the restart replays a gap-free prefix of what was published, short of at most the last flush interval', async (t) => {
  const dir = tempDir(t)
  const FLUSH_MS = 200
  // Frames the server had handled this long before the kill were on disk: one flush interval, plus slack for a busy event loop.
  const SURE_MS = FLUSH_MS + 300
  const PUBLISHERS = 4

  const { cli, url } = await startCli(dir, FLUSH_MS)
  // The observer sees every data frame in the server's order, the moment the server has stored it.
  const observer = await TestClient.join(url, { uid: 'observer', channel: 'load' })
  const observed: Observed[] = []
  observer.ws.on('message', (data) => { observed.push({ text: (data as Buffer).toString(), at: Date.now() }) })
  await sleep(200)
  const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, async (_, k) => await TestClient.join(url, { uid: `p${k}`, channel: 'load' })))
  await sleep(200)

  const padding = 'x'.repeat(150)
  const sent = new Array<number>(PUBLISHERS).fill(0)
  const timers = publishers.map((publisher, k) => setInterval(() => {
    for (let i = 0; i < 5; i++) publisher.send(`p${k} ${sent[k]++} ${padding}`)
  }, 5))
  await sleep(2500)
  const killedAt = Date.now()
  cli.child.kill('SIGKILL')
  assert.equal(await cli.exited, null, 'killed by the signal')
  for (const timer of timers) clearInterval(timer)
  await Promise.all([observer.closed, ...publishers.map(async (publisher) => await publisher.closed)])

  const texts = observed.map((frame) => frame.text)
  // The load itself: every publisher's frames reached the observer in order, none dropped.
  for (let k = 0; k < PUBLISHERS; k++) {
    const numbers = texts.filter((text) => text.startsWith(`p${k} `)).map((text) => Number(text.split(' ')[1]))
    assert.ok(numbers.length > 500, `publisher ${k} got ${numbers.length} frames through`)
    assert.ok(numbers.every((number, i) => number === i), `publisher ${k}'s frames all observed in order`)
  }

  const restarted = await startCli(dir, FLUSH_MS)
  const joiner = await TestClient.join(restarted.url, { uid: 'joiner', channel: 'load' })
  const history = (await replay(joiner)).map((message) => message.text)
  const joins = history.slice(0, PUBLISHERS + 1).map((text) => (JSON.parse(text) as { uid: string }).uid)
  assert.equal(joins[0], 'observer')
  assert.deepEqual(joins.slice(1).sort(), publishers.map((_, k) => `p${k}`))
  const data = history.slice(PUBLISHERS + 1)

  const lost = texts.length - data.length
  const sure = observed.filter((frame) => frame.at <= killedAt - SURE_MS).length
  assert.ok(data.length > 0, 'something was on disk')
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== texts[i]) assert.fail(`the replay departs from what was published at frame ${i}: ${data[i].slice(0, 20)} instead of ${texts[i]?.slice(0, 20)}`)
  }
  assert.ok(data.length >= sure,
    `every frame handled ${SURE_MS} ms before the kill survives: ${data.length} replayed, ${sure} handled by then, ${texts.length} in all (${lost} lost)`)
  t.diagnostic(`${texts.length} frames published, ${data.length} replayed after kill -9, ${lost} lost (${texts.length - sure} in the last ${SURE_MS} ms)`)

  joiner.close()
  await joiner.closed
  restarted.cli.child.kill('SIGTERM')
  assert.equal(await restarted.cli.exited, 0)
  assert.equal(restarted.cli.stderr(), '', 'no error written')
})
