import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { refusedUpgrade, TestClient } from '../helpers/client.js'
import { capturedLog } from '../helpers/log.js'
import { startV1Server, V1TestClient } from '../helpers/v1-client.js'

const OPEN = { messagesPerSecond: 0, perIpLimit: 0 }

test('past maxConnections an upgrade gets 503 with Retry-After, counted; a place freed is taken again', async () => {
  const { app, url } = await startMles({ ...OPEN, maxConnections: 3 })
  const clients = await Promise.all([0, 1, 2].map(async () => await TestClient.connect(url)))
  const refused = await refusedUpgrade(url)
  assert.equal(refused.status, 503)
  assert.equal(refused.headers['retry-after'], '10')
  assert.match(JSON.parse(refused.body).message, /most connections \(3\)/)
  assert.equal(app.mles.metrics().rejected_max_connections, 1)
  clients[0].close()
  await waitFor(() => app.mles.metrics().active_connections === 2, 'the place freed')
  const again = await TestClient.join(url, { uid: 'again', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  for (const client of [...clients, again]) client.close()
  await app.close()
})

test('a flood of concurrent upgrades gets exactly maxConnections through', async () => {
  const { app, url } = await startMles({ ...OPEN, maxConnections: 10 })
  const attempts = await Promise.allSettled(Array.from({ length: 40 }, async () => await TestClient.connect(url)))
  const opened = attempts.filter((attempt) => attempt.status === 'fulfilled')
  const refused = attempts.filter((attempt) => attempt.status === 'rejected')
  assert.equal(opened.length, 10)
  for (const attempt of refused) assert.equal((attempt.reason as { refused: { status: number } }).refused.status, 503)
  assert.equal(app.mles.metrics().rejected_max_connections, 30)
  assert.equal(app.mles.metrics().active_connections, 10)
  for (const attempt of opened) attempt.value.close()
  await app.close()
})

test('v1 TCP connections count toward maxConnections and are cut past it', async () => {
  const { app, url } = await startMles({ ...OPEN, maxConnections: 1, v1: { port: 0, host: '127.0.0.1' } })
  const member = await TestClient.connect(url)
  const v1Port = app.mles.v1Address()?.port as number
  const socket = connect(v1Port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('close', () => { resolve() }))
  assert.equal(app.mles.metrics().rejected_max_connections, 1)
  member.close()
  await app.close()
})

test('past maxChannels the least recently active channel without members makes room; when all have members, the join is closed with 1013', async () => {
  const { app, url } = await startMles({ ...OPEN, maxChannels: 2, perIpChannelLimit: 0 })
  const a = await TestClient.join(url, { uid: 'a', channel: 'A' })
  await waitForMembers(app, 'A', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'B' })
  await waitForMembers(app, 'B', 1)
  b.send('kept in B')
  await waitFor(() => app.mles.history('B').length === 2, 'B history')
  b.close()
  await waitForMembers(app, 'B', 0)

  const c = await TestClient.join(url, { uid: 'c', channel: 'C' })
  await waitForMembers(app, 'C', 1)
  assert.deepEqual(app.mles.channels().map((channel) => channel.name).sort(), ['A', 'C'], 'B, without members, made room')
  assert.equal(app.mles.metrics().history_evicted_frames, 2, 'its history counted as evicted')

  const d = await TestClient.join(url, { uid: 'd', channel: 'D' })
  assert.deepEqual(await d.closedWithin(), { code: 1013, reason: 'try again later: too many channels' })
  assert.equal(app.mles.metrics().rejected_max_channels, 1)
  const intoA = await TestClient.join(url, { uid: 'a2', channel: 'A' })
  await waitForMembers(app, 'A', 2)
  // The app's own channels are never refused.
  app.mles.publish('E', 'from the app')
  assert.equal(app.mles.history('E').length, 1)
  for (const client of [a, c, intoA]) client.close()
  await app.close()
})

test('perIpChannelLimit: an address creating too many channels in the window gets 1013; joining existing channels and other addresses are not held back', async () => {
  const log = capturedLog()
  const { app, url } = await startMles({ ...OPEN, perIpChannelLimit: 3 }, undefined, { trustProxy: true, logger: { level: 'info', stream: log.stream } })
  const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } })
  const clients: TestClient[] = []
  for (let i = 0; i < 3; i++) {
    clients.push(await TestClient.join(url, { uid: 'u', channel: `c${i}` }, from('198.51.100.7')))
    await waitForMembers(app, `c${i}`, 1)
  }
  const fourth = await TestClient.join(url, { uid: 'u', channel: 'c3' }, from('198.51.100.7'))
  assert.deepEqual(await fourth.closedWithin(), { code: 1013, reason: 'try again later: too many new channels from this address' })
  const fifth = await TestClient.join(url, { uid: 'u', channel: 'c4' }, from('198.51.100.7'))
  await fifth.closedWithin()
  assert.equal(app.mles.metrics().rejected_channel_rate, 2)
  assert.equal(log.lines.filter((line) => line.msg.includes('perIpChannelLimit')).length, 1, 'logged once for the minute')

  clients.push(await TestClient.join(url, { uid: 'v', channel: 'c0' }, from('198.51.100.7')))
  await waitForMembers(app, 'c0', 2)
  clients.push(await TestClient.join(url, { uid: 'u', channel: 'elsewhere' }, from('198.51.100.8')))
  await waitForMembers(app, 'elsewhere', 1)
  for (const client of clients) client.close()
  await app.close()
})

test('perIpChannelLimit keys an IPv6 address by its /64', async () => {
  const { app, url } = await startMles({ ...OPEN, perIpChannelLimit: 2 }, undefined, { trustProxy: true })
  const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } })
  const clients: TestClient[] = []
  for (const [i, ip] of ['2001:db8:aa:1::1', '2001:db8:aa:1:ffff:ffff:ffff:fffe'].entries()) {
    clients.push(await TestClient.join(url, { uid: 'u', channel: `v6-${i}` }, from(ip)))
    await waitForMembers(app, `v6-${i}`, 1)
  }
  const third = await TestClient.join(url, { uid: 'u', channel: 'v6-2' }, from('2001:db8:aa:1:1234::9'))
  assert.equal((await third.closedWithin()).code, 1013)
  clients.push(await TestClient.join(url, { uid: 'u', channel: 'v6-3' }, from('2001:db8:aa:2::1')))
  await waitForMembers(app, 'v6-3', 1)
  for (const client of clients) client.close()
  await app.close()
})

test('a channel-creation flood from 300 addresses: the channels held never pass maxChannels, idle ones make room, live ones are never dropped', async () => {
  const { app, url } = await startMles({ ...OPEN, maxChannels: 50, perIpChannelLimit: 2 }, undefined, { trustProxy: true })
  const from = (i: number): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': `198.18.${i >> 8}.${i & 255}` } })
  const live: TestClient[] = []
  for (let i = 0; i < 10; i++) {
    live.push(await TestClient.join(url, { uid: 'keeper', channel: `live${i}` }, from(1000 + i)))
    await waitForMembers(app, `live${i}`, 1)
  }
  let most = 0
  // Each visitor creates a channel, says something and leaves: 300 channels asked for, 50 held at most.
  for (let batch = 0; batch < 300; batch += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_, k) => {
      const i = batch + k
      const client = await TestClient.join(url, { uid: `v${i}`, channel: `flood${i}` }, from(i))
      client.send('hello')
      await waitFor(() => app.mles.history(`flood${i}`).length === 2 || client.ws.readyState !== 1, `flood${i}`)
      most = Math.max(most, app.mles.metrics().total_channels)
      client.close()
      await client.closed
    }))
  }
  assert.ok(most <= 50, `at most 50 channels held (saw ${most})`)
  assert.ok(app.mles.metrics().total_channels <= 50)
  for (let i = 0; i < 10; i++) assert.equal(app.mles.channels().find((channel) => channel.name === `live${i}`)?.members, 1, `live${i} is still there`)
  assert.ok(app.mles.metrics().history_evicted_frames > 0)

  // Now fill every place with members: the next new channel is refused.
  const holders: TestClient[] = []
  for (let i = 0; app.mles.channels().some((channel) => channel.members === 0); i++) {
    holders.push(await TestClient.join(url, { uid: 'h', channel: `hold${i}` }, from(2000 + i)))
    await waitForMembers(app, `hold${i}`, 1)
  }
  assert.equal(app.mles.metrics().total_channels, 50)
  const refused = await TestClient.join(url, { uid: 'late', channel: 'one-too-many' }, from(3000))
  assert.deepEqual(await refused.closedWithin(), { code: 1013, reason: 'try again later: too many channels' })
  for (const client of [...live, ...holders]) client.close()
  await app.close()
})

test('v1 clients meet the same channel limits: a v1 join that would create a channel past maxChannels is cut', async () => {
  const { server, v1Port } = await startV1Server({ maxChannels: 1, perIpChannelLimit: 0 })
  const member = await TestClient.join(server.url, { uid: 'ws', channel: 'only' })
  await waitForMembers(server.app, 'only', 1)
  const v1 = await V1TestClient.join(v1Port, 'tcp', 'another')
  assert.equal(await v1.closedWithin(), true)
  assert.equal(server.app.mles.metrics().rejected_max_channels, 1)
  const intoExisting = await V1TestClient.join(v1Port, 'tcp2', 'only')
  await waitForMembers(server.app, 'only', 2)
  assert.equal(await intoExisting.closedWithin(200), false)
  intoExisting.close()
  member.close()
  await server.app.close()
})

test('an upgrade in flight holds its place under maxConnections until it is accepted', async () => {
  const slowOrigin = async (origin: string): Promise<boolean> => {
    if (origin === 'https://slow.example') await new Promise((resolve) => setTimeout(resolve, 300))
    return true
  }
  const { app, url } = await startMles({ ...OPEN, maxConnections: 1, allowedOrigins: slowOrigin })
  const slow = TestClient.connect(url, 'mles-websocket', { headers: { origin: 'https://slow.example' } })
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal((await refusedUpgrade(url)).status, 503, 'the upgrade waiting at the origin check holds the only place')
  const first = await slow
  first.close()
  await waitFor(() => app.mles.metrics().active_connections === 0, 'the place freed')
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  client.close()
  await app.close()
})
