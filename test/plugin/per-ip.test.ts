import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMles, sleep } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

test('past perIpLimit upgrades per window an address is refused with 429 before upgrade, and counted', async () => {
  const { app, url } = await startMles({ perIpLimit: 3, perIpWindowMs: 1000 })
  const clients = [await TestClient.connect(url), await TestClient.connect(url), await TestClient.connect(url)]
  for (let i = 0; i < 2; i++) {
    const refused = await refusedUpgrade(url)
    assert.equal(refused.status, 429)
    assert.ok(Number(refused.headers['retry-after']) >= 1)
    assert.match(JSON.parse(refused.body).message, /at most 3 connections per 1 s/)
  }
  assert.equal(app.mles.metrics().dropped_by_ip, 2)
  assert.equal(app.mles.metrics().active_connections, 3, 'refused attempts never became connections')
  // the connected ones are unaffected
  clients[0].send(JSON.stringify({ uid: 'a', channel: 'c' }))
  clients[1].send(JSON.stringify({ uid: 'b', channel: 'c' }))
  await sleep(50)
  clients[0].send('hi')
  assert.equal((await clients[1].next()).text, '{"uid":"a","channel":"c"}')
  assert.equal((await clients[1].next()).text, 'hi')
  // a new window allows again
  await sleep(1050)
  const later = await TestClient.connect(url)
  later.close()
  for (const client of clients) client.close()
  await app.close()
})

test('the limit counts per address: IPv4 and IPv6 loopback are separate', async () => {
  // listening on "::" takes both families; IPv4 peers appear as ::ffff:127.0.0.1
  const dual = await startMlesDual({ perIpLimit: 1 })
  const v4 = await TestClient.connect(`ws://127.0.0.1:${dual.port}/`)
  assert.equal((await refusedUpgrade(`ws://127.0.0.1:${dual.port}/`)).status, 429)
  const v6 = await TestClient.connect(`ws://[::1]:${dual.port}/`)
  v4.close()
  v6.close()
  await dual.app.close()
})

test('perIpLimit 0 turns the limit off', async () => {
  const { app, url } = await startMles({ perIpLimit: 0 })
  const clients: TestClient[] = []
  for (let i = 0; i < 80; i++) clients.push(await TestClient.connect(url))
  assert.equal(app.mles.metrics().dropped_by_ip, 0)
  for (const client of clients) client.close()
  await app.close()
})

test('the default allows 60 per minute', async () => {
  const { app, url } = await startMles()
  const clients: TestClient[] = []
  for (let i = 0; i < 60; i++) clients.push(await TestClient.connect(url))
  assert.equal((await refusedUpgrade(url)).status, 429)
  for (const client of clients) client.close()
  await app.close()
})

async function startMlesDual (options: { perIpLimit: number }): Promise<{ app: import('fastify').FastifyInstance, port: number }> {
  const { default: Fastify } = await import('fastify')
  const { default: mles } = await import('../../src/index.js')
  const app = Fastify()
  await app.register(mles, options)
  await app.listen({ port: 0, host: '::' })
  return { app, port: (app.server.address() as { port: number }).port }
}

test('an IPv6 /64 rotating its low bits counts as one address; another /64 does not; ipv6PrefixLength 128 counts each address', async () => {
  const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } })
  const rotating = (i: number): string => `2001:db8:5:6:${(i * 7919).toString(16)}:${i.toString(16)}:0:${(i + 1).toString(16)}`
  const by64 = await startMles({ perIpLimit: 5 }, undefined, { trustProxy: true })
  const clients: TestClient[] = []
  for (let i = 0; i < 5; i++) clients.push(await TestClient.connect(by64.url, 'mles-websocket', from(rotating(i))))
  const refused = await refusedUpgrade(by64.url, 'mles-websocket', from(rotating(5)))
  assert.equal(refused.status, 429)
  assert.equal(by64.app.mles.metrics().dropped_by_ip, 1)
  clients.push(await TestClient.connect(by64.url, 'mles-websocket', from('2001:db8:5:7::1')))
  // IPv4-mapped IPv6 and IPv4 are one address.
  for (let i = 0; i < 5; i++) clients.push(await TestClient.connect(by64.url, 'mles-websocket', from(i % 2 === 0 ? '192.0.2.9' : '::ffff:192.0.2.9')))
  assert.equal((await refusedUpgrade(by64.url, 'mles-websocket', from('192.0.2.9'))).status, 429)
  for (const client of clients.splice(0)) client.close()
  await by64.app.close()

  const byAddress = await startMles({ perIpLimit: 5, ipv6PrefixLength: 128 }, undefined, { trustProxy: true })
  for (let i = 0; i < 8; i++) clients.push(await TestClient.connect(byAddress.url, 'mles-websocket', from(rotating(i))))
  assert.equal(byAddress.app.mles.metrics().dropped_by_ip, 0)
  for (const client of clients) client.close()
  await byAddress.app.close()
})
