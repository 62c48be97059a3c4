import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import fastifyWebsocket from '@fastify/websocket'
import { fileURLToPath } from 'node:url'
import mles from '../../src/index.js'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

test('mles-websocket offered alone or among others is answered with exactly mles-websocket', async () => {
  const { app, url } = await startMles()
  for (const protocols of [['mles-websocket'], ['chat', 'mles-websocket'], ['mles-websocket', 'other']]) {
    const client = await TestClient.connect(url, protocols)
    assert.equal(client.ws.protocol, 'mles-websocket', protocols.join(','))
    client.close()
  }
  await app.close()
})

test('an upgrade without mles-websocket is refused with 400 and a reason', async () => {
  const { app, url } = await startMles()
  for (const protocols of [null, 'chat', ['MLES-WEBSOCKET'], ['mles-websocket2']]) {
    const refused = await refusedUpgrade(url, protocols)
    assert.equal(refused.status, 400, String(protocols))
    assert.match(JSON.parse(refused.body).message, /must offer the subprotocol "mles-websocket"/)
  }
  // The server is undisturbed.
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  client.close()
  await app.close()
})

test('plain GETs on the same path reach the app\'s own routes', async () => {
  const { app, origin, url } = await startMles({}, (instance) => {
    instance.get('/', async (_request, reply) => reply.type('text/html').send('<h1>chat</h1>'))
  })
  const response = await fetch(origin + '/')
  assert.equal(response.status, 200)
  assert.equal(await response.text(), '<h1>chat</h1>')
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  client.close()
  await app.close()
})

test('a static index.html from @fastify/static at / lives beside the endpoint at /', async () => {
  const root = fileURLToPath(new URL('../fixtures/www/', import.meta.url))
  const { app, origin, url } = await startMles({}, async (instance) => {
    await instance.register(fastifyStatic, { root })
  })
  const index = await fetch(origin + '/')
  assert.equal(index.status, 200)
  assert.match(index.headers.get('content-type') ?? '', /text\/html/)
  assert.match(await index.text(), /static index/)
  assert.equal((await fetch(origin + '/index.html')).status, 200)
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  assert.equal((await b.next()).text, '{"uid":"a","channel":"c"}')
  a.close()
  b.close()
  await app.close()
})

test('a request naming Upgrade: websocket without upgrading gets 426', async () => {
  const { app, port } = await startMles()
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', headers: { upgrade: 'websocket', 'sec-websocket-protocol': 'mles-websocket' } }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(status, 426)
  await app.close()
})

test('the `path` option moves the endpoint; other paths keep their own routes', async () => {
  const { app, origin, url } = await startMles({ path: '/mles' }, (instance) => {
    instance.get('/', async () => 'root')
  })
  assert.ok(url.endsWith('/mles'))
  const client = await TestClient.join(url, { uid: 'a', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  assert.equal(await (await fetch(origin + '/')).text(), 'root')
  client.close()
  await app.close()
})

test('works beside the app\'s own @fastify/websocket routes', async () => {
  const app = Fastify()
  await app.register(fastifyWebsocket)
  app.get('/echo', { websocket: true }, (socket) => { socket.on('message', (data) => socket.send(data)) })
  await app.register(mles, { path: '/' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const echo = await TestClient.connect(`ws://127.0.0.1:${port}/echo`, ['x-echo'])
  assert.equal(echo.ws.protocol, 'x-echo', 'other routes keep ws\'s default protocol choice')
  echo.send('ping')
  assert.equal((await echo.next()).text, 'ping')
  const a = await TestClient.join(`ws://127.0.0.1:${port}/`, { uid: 'a', channel: 'c' })
  assert.equal(a.ws.protocol, 'mles-websocket')
  await waitForMembers(app, 'c', 1)
  echo.close()
  await app.close()
  assert.equal((await a.closedWithin()).code, 1001)
})
