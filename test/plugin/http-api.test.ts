import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { startMles, waitForMembers, type RunningServer } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

const KEY = 'k3y-for-the-tests-0123456789'
const PREFIX = '/_mles/api'

interface Answer {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

async function call (server: RunningServer, method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }): Promise<Answer> {
  const response = await fetch(`${server.origin}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  const text = await response.text()
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/, `JSON answer to ${method} ${path}: ${text}`)
  return { status: response.status, headers: response.headers, body: JSON.parse(text) as Record<string, unknown> }
}

const publish = async (server: RunningServer, body: unknown): Promise<Answer> => await call(server, 'POST', `${PREFIX}/publish`, body)

async function withApi (options: Parameters<typeof startMles>[0] = {}, setup?: (app: FastifyInstance) => void | Promise<void>): Promise<RunningServer> {
  return await startMles({ api: { key: KEY }, ...options }, setup)
}

test('publish sends text and binary frames to the members and into the history', async () => {
  const server = await withApi()
  const member = await TestClient.join(server.url, { uid: 'alice', channel: 'news' })
  await waitForMembers(server.app, 'news', 1)

  const answer = await publish(server, { channel: 'news', data: 'hello, wörld' })
  assert.equal(answer.status, 200)
  assert.deepEqual(answer.body, { ok: true })
  const text = await member.next()
  assert.equal(text.isBinary, false)
  assert.equal(text.text, 'hello, wörld')

  const bytes = Buffer.from([0, 1, 2, 250, 255])
  assert.equal((await publish(server, { channel: 'news', data: bytes.toString('base64'), binary: true })).status, 200)
  const binary = await member.next()
  assert.equal(binary.isBinary, true)
  assert.deepEqual(binary.data, bytes)

  // binary: false is a text frame even when the data looks like base64
  await publish(server, { channel: 'news', data: 'AAEC', binary: false })
  assert.equal((await member.next()).text, 'AAEC')

  const history = await call(server, 'GET', `${PREFIX}/channels/news/history`)
  assert.equal(history.status, 200)
  assert.deepEqual(history.body, {
    frames: [
      { data: '{"uid":"alice","channel":"news"}', binary: false },
      { data: 'hello, wörld', binary: false },
      { data: bytes.toString('base64'), binary: true },
      { data: 'AAEC', binary: false }
    ]
  })
  member.close()
  await server.app.close()
})

test('channels, history and members answer what app.mles holds', async () => {
  const server = await withApi()
  const a = await TestClient.join(server.url, { uid: 'bob', channel: 'room/1' })
  const b = await TestClient.join(server.url, { uid: 'alice', channel: 'room/1' })
  await waitForMembers(server.app, 'room/1', 2)
  server.app.mles.publish('empty-members', 'stored')

  const channels = await call(server, 'GET', `${PREFIX}/channels`)
  assert.equal(channels.status, 200)
  const list = channels.body.channels as Array<{ name: string }>
  assert.deepEqual(list.sort((x, y) => x.name.localeCompare(y.name)), [
    { name: 'empty-members', members: 0, historySize: 1, historyBytes: 8 },
    { name: 'room/1', members: 2, historySize: 2, historyBytes: 70 }
  ])

  // a channel name with a slash travels URL-encoded
  const members = await call(server, 'GET', `${PREFIX}/channels/${encodeURIComponent('room/1')}/members`)
  assert.equal(members.status, 200)
  assert.deepEqual(members.body, { members: ['alice', 'bob'] })
  assert.deepEqual((await call(server, 'GET', `${PREFIX}/channels/empty-members/members`)).body, { members: [] })
  assert.deepEqual((await call(server, 'GET', `${PREFIX}/channels/unknown/history`)).body, { frames: [] })
  assert.deepEqual((await call(server, 'GET', `${PREFIX}/channels/unknown/members`)).body, { members: [] })
  assert.deepEqual((await call(server, 'GET', `${PREFIX}/channels/empty-members/history`)).body, { frames: [{ data: 'stored', binary: false }] })
  a.close()
  b.close()
  await server.app.close()
})

test('the bearer key: missing, wrong scheme, wrong, same length but wrong, and lower-case scheme', async () => {
  const server = await withApi()
  const refusals: Array<[Record<string, string>, string]> = [
    [{}, 'missing'],
    [{ authorization: `Basic ${Buffer.from(`user:${KEY}`).toString('base64')}` }, 'missing'],
    [{ authorization: KEY }, 'missing'],
    [{ authorization: 'Bearer' }, 'missing'],
    [{ authorization: 'Bearer short' }, 'wrong'],
    [{ authorization: `Bearer ${KEY.slice(0, -1)}X` }, 'wrong'],
    [{ authorization: `Bearer ${KEY}${KEY}` }, 'wrong']
  ]
  for (const [headers, kind] of refusals) {
    for (const [method, path, body] of [['POST', '/publish', { channel: 'c', data: 'x' }], ['GET', '/channels', undefined], ['GET', '/channels/c/history', undefined], ['GET', '/channels/c/members', undefined]] as const) {
      const answer = await call(server, method, `${PREFIX}${path}`, body, headers)
      assert.equal(answer.status, 401, `${JSON.stringify(headers)} on ${path}`)
      assert.deepEqual(Object.keys(answer.body).sort(), ['error', 'message', 'statusCode'])
      assert.equal(answer.body.statusCode, 401)
      assert.equal(answer.body.error, 'Unauthorized')
      assert.match(answer.headers.get('www-authenticate') ?? '', kind === 'missing' ? /^Bearer$/ : /^Bearer error="invalid_token"$/)
    }
  }
  assert.equal(server.app.mles.channels().length, 0, 'nothing was published')
  assert.equal((await call(server, 'GET', `${PREFIX}/channels`, undefined, { authorization: `bearer ${KEY}` })).status, 200, 'the scheme is case-insensitive')
  await server.app.close()
})

test('the key is checked before the body is read', async () => {
  const server = await withApi({ maxMessageBytes: 1024 })
  // A body far over the limit, refused for the key rather than its size.
  const answer = await call(server, 'POST', `${PREFIX}/publish`, { channel: 'c', data: 'x'.repeat(100_000) }, {})
  assert.equal(answer.status, 401)
  await server.app.close()
})

test('schema violations answer 400 in JSON and publish nothing', async () => {
  const server = await withApi()
  const bad: unknown[] = [
    {},
    { data: 'x' },
    { channel: 'c' },
    { channel: 'c', data: 42 },
    { channel: 'c', data: null },
    { channel: 'c', data: ['x'] },
    { channel: 42, data: 'x' },
    { channel: '', data: 'x' },
    { channel: 'caf\u00e9', data: 'x' },
    { channel: 'c', data: 'x', binary: 'true' },
    { channel: 'c', data: 'x', binary: 1 },
    { channel: 'c', data: 'x', extra: true },
    { channel: 'c', data: 'not base64!', binary: true },
    { channel: 'c', data: 'AAE', binary: true },
    { channel: 'c', data: 'AA=A', binary: true },
    { channel: 'c', data: 'AA-_', binary: true },
    ['c', 'x'],
    'null',
    '"text"',
    '{"channel": "c", "data": ',
    '{"channel":"c","data":"x","__proto__":{"polluted":true}}'
  ]
  for (const body of bad) {
    const answer = await publish(server, body)
    assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`)
    assert.equal(answer.body.statusCode, 400)
    assert.equal(answer.body.error, 'Bad Request')
    assert.equal(typeof answer.body.message, 'string')
  }
  const missing = await publish(server, { data: 'x' })
  assert.match(String(missing.body.message), /channel/)
  const base64 = await publish(server, { channel: 'c', data: '***', binary: true })
  assert.match(String(base64.body.message), /base64/)

  const empty = await call(server, 'POST', `${PREFIX}/publish`, '')
  assert.equal(empty.status, 400)
  const form = await call(server, 'POST', `${PREFIX}/publish`, undefined, { authorization: `Bearer ${KEY}`, 'content-type': 'text/plain' })
  assert.equal(form.status, 415)

  for (const name of [encodeURIComponent('caf\u00e9'), '']) {
    for (const part of ['history', 'members']) {
      const answer = await call(server, 'GET', `${PREFIX}/channels/${name}/${part}`)
      assert.equal(answer.status, 400, `${name}/${part}: ${JSON.stringify(answer.body)}`)
    }
  }
  assert.equal(server.app.mles.channels().length, 0, 'nothing was published')
  await server.app.close()
})

test('data over maxMessageBytes answers 413, text and binary', async () => {
  const limit = 20_000
  const server = await withApi({ maxMessageBytes: limit })
  const member = await TestClient.join(server.url, { uid: 'u', channel: 'c' })
  await waitForMembers(server.app, 'c', 1)

  // exactly the limit passes, in every form
  assert.equal((await publish(server, { channel: 'c', data: 'x'.repeat(limit) })).status, 200)
  assert.equal((await publish(server, { channel: 'c', data: Buffer.alloc(limit, 7).toString('base64'), binary: true })).status, 200)
  // the largest valid body: every byte a JSON escape, six times the payload
  assert.equal((await publish(server, `{"channel":"c","data":"${'\\u0001'.repeat(limit)}"}`)).status, 200)
  const received = [await member.next(), await member.next(), await member.next()]
  assert.deepEqual(received.map((frame) => frame.data.length), [limit, limit, limit])
  assert.equal(received[2].text, '\u0001'.repeat(limit))

  for (const body of [
    { channel: 'c', data: 'x'.repeat(limit + 1) },
    { channel: 'c', data: '\u00e9'.repeat(limit / 2 + 1) },
    { channel: 'c', data: Buffer.alloc(limit + 1).toString('base64'), binary: true },
    { channel: 'c', data: 'x'.repeat(5 * limit) }
  ]) {
    const answer = await publish(server, body)
    assert.equal(answer.status, 413, JSON.stringify(answer.body))
    assert.equal(answer.body.error, 'Payload Too Large')
  }
  await member.expectSilence()
  member.close()
  await server.app.close()
})

test('a body over the route\'s limit is refused with 413 without being read whole', async () => {
  const server = await withApi({ maxMessageBytes: 100 })
  const answer = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path: `${PREFIX}/publish`, method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'content-length': String(10 * 1024 * 1024) } }, (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => {
        req.destroy()
        resolve({ status: response.statusCode ?? 0, body })
      })
    })
    req.on('error', reject)
    req.write('{"channel":"c","data":"')
  })
  assert.equal(answer.status, 413)
  assert.equal(JSON.parse(answer.body).statusCode, 413)
  await server.app.close()
})

test('the API is off by default', async () => {
  const server = await startMles()
  for (const [method, path] of [['POST', '/publish'], ['GET', '/channels'], ['GET', '/channels/c/history'], ['GET', '/channels/c/members']] as const) {
    const response = await fetch(`${server.origin}${PREFIX}${path}`, { method, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: method === 'POST' ? '{"channel":"c","data":"x"}' : undefined })
    assert.equal(response.status, 404)
  }
  await server.app.close()
})

test('option api.prefix moves the routes', async () => {
  const server = await startMles({ api: { key: KEY, prefix: '/internal/mles' } })
  assert.equal((await call(server, 'POST', '/internal/mles/publish', { channel: 'c', data: 'x' })).status, 200)
  assert.deepEqual((await call(server, 'GET', '/internal/mles/channels')).body, { channels: [{ name: 'c', members: 0, historySize: 1, historyBytes: 3 }] })
  assert.equal((await fetch(`${server.origin}${PREFIX}/channels`, { headers: { authorization: `Bearer ${KEY}` } })).status, 404)
  await server.app.close()
})

test('the API keeps to itself: the app\'s routes, error handler and parsers are untouched, and the WebSocket route works beside it', async () => {
  const server = await withApi({ path: PREFIX + '/channels' }, (app) => {
    app.setErrorHandler(async (_error, _request, reply) => await reply.code(418).type('text/plain').send('app error handler'))
    app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
    app.post('/echo', async (request) => ({ echo: request.body }))
    app.post('/fail', async () => { throw new Error('boom') })
    app.post('/numbers', { schema: { body: { type: 'object', properties: { n: { type: 'string' } } } } }, async (request) => request.body)
  })
  // the app's own routes: its parser, its error handler, its (coercing) validator
  const echo = await fetch(`${server.origin}/echo`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' })
  assert.deepEqual(await echo.json(), { echo: 'hi' })
  const fail = await fetch(`${server.origin}/fail`, { method: 'POST' })
  assert.equal(fail.status, 418)
  const numbers = await fetch(`${server.origin}/numbers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":42}' })
  assert.deepEqual(await numbers.json(), { n: '42' })
  // the API: JSON errors of its own, no text/plain
  assert.equal((await publish(server, { channel: 'c', data: 42 })).status, 400)
  assert.equal((await call(server, 'POST', `${PREFIX}/publish`, undefined, { authorization: `Bearer ${KEY}`, 'content-type': 'text/plain' })).status, 415)
  // the WebSocket endpoint on the API's path still upgrades
  const member = await TestClient.join(server.url, { uid: 'u', channel: 'c' })
  await waitForMembers(server.app, 'c', 1)
  assert.equal((await call(server, 'GET', `${PREFIX}/channels`)).status, 200)
  member.close()
  await server.app.close()
})

test('publish while the server is closing answers 503', async () => {
  const server = await withApi()
  await server.app.mles.close()
  const answer = await publish(server, { channel: 'c', data: 'x' })
  assert.equal(answer.status, 503)
  await server.app.close()
})
