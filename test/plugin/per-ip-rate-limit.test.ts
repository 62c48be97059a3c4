import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'
import mles from '../../src/index.js'
import { startMles } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

const KEY = 'k3y-for-the-tests-0123456789'

test('an app with its own @fastify/rate-limit: both limits hold, each on its own routes, with its own answer', async () => {
  const { app, url, origin } = await startMles({ perIpLimit: 3, perIpWindowMs: 60_000 }, async (app) => {
    await app.register(rateLimit, { max: 2, timeWindow: 60_000 })
    app.get('/hello', async () => ({ hello: 'world' }))
    app.get('/own', { config: { rateLimit: { max: 1, timeWindow: 60_000 } } }, async () => ({ own: true }))
  })
  const clients = [await TestClient.connect(url), await TestClient.connect(url), await TestClient.connect(url)]
  const refused = await refusedUpgrade(url)
  assert.equal(refused.status, 429)
  assert.deepEqual(JSON.parse(refused.body), { statusCode: 429, error: 'Too Many Requests', message: 'at most 3 connections per 60 s from one address' })
  assert.ok(Number(refused.headers['retry-after']) >= 59)
  assert.equal(app.mles.metrics().dropped_by_ip, 1, 'counted once, though both registrations see the route')

  // the app's global limit, untouched by the upgrades
  assert.equal((await fetch(`${origin}/hello`)).status, 200)
  const second = await fetch(`${origin}/hello`)
  assert.equal(second.status, 200)
  assert.equal(second.headers.get('x-ratelimit-limit'), '2', 'the app\'s headers on its routes')
  const third = await fetch(`${origin}/hello`)
  assert.equal(third.status, 429)
  assert.match((await third.json() as { message: string }).message, /Rate limit exceeded/)
  // and its per-route limit
  assert.equal((await fetch(`${origin}/own`)).status, 200)
  assert.equal((await fetch(`${origin}/own`)).status, 429)
  assert.equal(app.mles.metrics().dropped_by_ip, 1, 'the app\'s refusals are not ours')
  for (const client of clients) client.close()
  await app.close()
})

test('with perIpLimit 0 an app\'s global @fastify/rate-limit applies to the upgrade route as to its others', async () => {
  const { app, url } = await startMles({ perIpLimit: 0 }, async (app) => {
    await app.register(rateLimit, { max: 2, timeWindow: 60_000 })
  })
  const clients = [await TestClient.connect(url), await TestClient.connect(url)]
  const refused = await refusedUpgrade(url)
  assert.equal(refused.status, 429)
  assert.match(JSON.parse(refused.body).message, /Rate limit exceeded/)
  assert.equal(app.mles.metrics().dropped_by_ip, 0)
  for (const client of clients) client.close()
  await app.close()
})

test('the plugin\'s own registration stays in its contexts: the app gets no rate-limit decorators or limits', async () => {
  const { app, origin } = await startMles({ perIpLimit: 1, api: { key: KEY } }, (app) => {
    app.get('/hello', async () => ({ hello: 'world' }))
  })
  assert.equal(app.hasDecorator('rateLimit'), false)
  assert.equal(app.hasDecorator('createRateLimit'), false)
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${origin}/hello`)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('x-ratelimit-limit'), null)
  }
  await app.close()
})

test('an app registering @fastify/rate-limit after the plugin: both work', async () => {
  const app = Fastify()
  await app.register(mles, { perIpLimit: 1 })
  await app.register(rateLimit, { max: 1, timeWindow: 60_000 })
  app.get('/hello', async () => ({ hello: 'world' }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const client = await TestClient.connect(`ws://127.0.0.1:${port}/`)
  const refused = await refusedUpgrade(`ws://127.0.0.1:${port}/`)
  assert.equal(refused.status, 429)
  assert.match(JSON.parse(refused.body).message, /at most 1 connections per 60 s/)
  assert.equal((await fetch(`http://127.0.0.1:${port}/hello`)).status, 200)
  assert.equal((await fetch(`http://127.0.0.1:${port}/hello`)).status, 429)
  client.close()
  await app.close()
})

test('the HTTP API: requests without the right key count against perIpLimit and then get 429; requests with it never do', async () => {
  const { app, origin } = await startMles({ perIpLimit: 2, perIpWindowMs: 60_000, api: { key: KEY } })
  const channels = async (authorization?: string): Promise<Response> => await fetch(`${origin}/_mles/api/channels`, { headers: authorization === undefined ? {} : { authorization } })
  for (let i = 0; i < 10; i++) assert.equal((await channels(`Bearer ${KEY}`)).status, 200)
  assert.equal((await channels()).status, 401)
  assert.equal((await channels('Bearer wrong-key-of-some-length')).status, 401)
  const refused = await channels('Bearer guess-number-three-xxxx')
  assert.equal(refused.status, 429)
  assert.ok(Number(refused.headers.get('retry-after')) >= 59)
  assert.deepEqual(await refused.json(), { statusCode: 429, error: 'Too Many Requests', message: 'at most 2 requests without the API key per 60 s from one address' })
  assert.equal((await channels()).status, 429)
  assert.equal(app.mles.metrics().dropped_by_ip, 2)
  // the right key still passes, and publishes
  const published = await fetch(`${origin}/_mles/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: '{"channel":"c","data":"x"}' })
  assert.equal(published.status, 200)
  assert.equal((await channels(`Bearer ${KEY}`)).status, 200)
  await app.close()
})

test('the app\'s error handler still answers the other errors of the upgrade route', async () => {
  const { app, url } = await startMles({ perIpLimit: 1 }, (app) => {
    app.setErrorHandler(async (_error, _request, reply) => await reply.code(418).send({ teapot: true }))
    // preValidation: an onRequest hook added before @fastify/websocket runs before it marks the request as an upgrade, and a refusal there leaves the socket open
    app.addHook('preValidation', async (request) => {
      if (request.headers['x-deny'] !== undefined) throw new Error('denied by the app')
    })
  })
  const refused = await refusedUpgrade(url, 'mles-websocket', { headers: { 'x-deny': '1' } })
  assert.equal(refused.status, 418)
  assert.deepEqual(JSON.parse(refused.body), { teapot: true })
  await app.close()
})

test('the upgrade\'s checks run in order: shutdown, then the per-IP limit, then the subprotocol', async () => {
  const { app, url } = await startMles({ perIpLimit: 1 })
  assert.equal((await refusedUpgrade(url, 'other-protocol')).status, 400, 'counted, then refused for the subprotocol')
  assert.equal((await refusedUpgrade(url, 'other-protocol')).status, 429, 'the limit comes first')
  await app.mles.close()
  assert.equal((await refusedUpgrade(url)).status, 503, 'shutting down comes before the limit')
  await app.close()
})
