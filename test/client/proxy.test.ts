import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MlesClient, MlesProxy, frameText, type MlesMessage } from '../../src/client/index.js'
import { startMles, waitFor, sleep, type RunningServer } from '../helpers/server.js'

const fast = { reconnect: { minDelayMs: 50, maxDelayMs: 300 } }

function received (client: MlesClient): string[] {
  const texts: string[] = []
  client.on('message', (message: MlesMessage) => { texts.push(message.binary ? `bin:${[...(message.data as Uint8Array)].join(',')}` : frameText(message)) })
  return texts
}

test('three servers in a ring linked by three proxies: every frame reaches every client once, no loop, also across a restart', async () => {
  const servers: RunningServer[] = []
  for (let i = 0; i < 3; i++) servers.push(await startMles({ messagesPerSecond: 0 }))
  const urls = servers.map((server) => server.url)
  const proxies = [[0, 1], [1, 2], [2, 0]].map(([a, b]) => new MlesProxy({ servers: [urls[a], urls[b]], uid: `proxy-${a}${b}`, channel: 'ring', ...fast }))
  await Promise.all(proxies.map(async (proxy) => { await proxy.ready }))
  const clients = urls.map((url, i) => new MlesClient(url, { uid: `client${i}`, channel: 'ring', ...fast }))
  const inbox = clients.map(received)
  await Promise.all(clients.map(async (client) => { await client.ready }))
  await waitFor(() => servers.every((server) => server.app.mles.channels()[0]?.members === 3), 'each server: 1 client + 2 proxies')

  clients[0].send('from 0')
  clients[1].send('from 1')
  clients[2].send('from 2')
  clients[2].send(new Uint8Array([7, 7]))
  const expected = [['from 1', 'from 2', 'bin:7,7'], ['from 0', 'from 2', 'bin:7,7'], ['from 0', 'from 1']]
  await waitFor(() => inbox.every((texts, i) => texts.length >= expected[i].length), 'every frame everywhere', 5000)
  await sleep(500)
  inbox.forEach((texts, i) => { assert.deepEqual([...texts].sort(), [...expected[i]].sort(), `client ${i}`) })
  const totals = (): number => proxies.reduce((sum, proxy) => sum + proxy.forwarded.flat().reduce((a, b) => a + b, 0), 0)
  const settled = totals()
  await sleep(500)
  assert.equal(totals(), settled, 'no frame keeps circling')

  // restart server 1 with empty memory
  const port = Number(new URL(urls[1]).port)
  await servers[1].app.close()
  servers[1] = await startMles({ messagesPerSecond: 0 }, undefined, {}, port)
  await waitFor(() => servers[1].app.mles.channels()[0]?.members === 3, 'client and proxies back on the restarted server', 10_000)
  await sleep(1000) // replays, resyncs
  inbox.forEach((texts, i) => { assert.deepEqual([...texts].sort(), [...expected[i]].sort(), `client ${i} after the restart: no duplicates`) })
  clients[1].send('after the restart')
  await waitFor(() => inbox[0].includes('after the restart') && inbox[2].includes('after the restart'), 'the new frame everywhere', 5000)
  await sleep(500)
  assert.equal(inbox[0].filter((text) => text === 'after the restart').length, 1)
  assert.equal(inbox[2].filter((text) => text === 'after the restart').length, 1)
  const afterRestart = totals()
  await sleep(500)
  assert.equal(totals(), afterRestart, 'still no loop')
  // the restarted server got the channel back: a new joiner there sees the history, each frame once
  const late = new MlesClient(urls[1], { uid: 'late', channel: 'ring' })
  const lateInbox = received(late)
  await late.ready
  await sleep(400)
  assert.deepEqual([...lateInbox].sort(), ['after the restart', 'bin:7,7', 'from 0', 'from 1', 'from 2'])

  for (const client of [...clients, late]) client.close()
  for (const proxy of proxies) proxy.close()
  await Promise.all(servers.map(async (server) => { await server.app.close() }))
})

test('a proxy needs at least two servers', () => {
  assert.throws(() => new MlesProxy({ servers: ['ws://127.0.0.1:1/'], uid: 'p', channel: 'c' }), /at least two servers/)
})
