import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import mles, { computeAuth, type MlesAuthorize, type MlesJoinRequest, type MlesOptions } from '../../src/index.js'
import { sleep, startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { capturedLog } from '../helpers/log.js'
import { TestClient } from '../helpers/client.js'

declare module 'fastify' {
  interface FastifyRequest {
    user: string | null
  }
}

/** The app's own login, as a site would have it: a token in the query names the user (cookies work the same way). */
function login (app: FastifyInstance): void {
  app.decorateRequest('user', null)
  app.addHook('onRequest', async (request) => {
    const token = new URL(request.url, 'http://x').searchParams.get('token')
    request.user = token === null ? null : token.replace(/^secret-/, '')
  })
}

async function start (authorize: MlesAuthorize, options: MlesOptions = {}): Promise<Awaited<ReturnType<typeof startMles>> & { log: ReturnType<typeof capturedLog>['lines'] }> {
  const log = capturedLog()
  const server = await startMles({ authorize, allowedOrigins: ['*'], messagesPerSecond: 0, ...options }, login, { logger: { level: 'info', stream: log.stream } })
  return { ...server, log: log.lines }
}

test('authorize sees the upgrade request as the app\'s hooks left it and the join, once; true admits', async () => {
  const calls: Array<{ user: string | null, join: MlesJoinRequest, url: string }> = []
  const { app, url } = await start((request, join) => {
    calls.push({ user: request.user, join, url: request.url })
    return request.user !== null
  })
  const alice = await TestClient.join(`${url}?token=secret-alice`, { uid: 'alice', channel: 'room' })
  await waitForMembers(app, 'room', 1)
  const bob = await TestClient.join(`${url}?token=secret-bob`, { uid: 'bob', channel: 'room' })
  assert.equal((await bob.next()).text, '{"uid":"alice","channel":"room"}')
  await waitForMembers(app, 'room', 2)
  bob.send('hello')
  assert.equal((await alice.next()).text, 'hello')
  assert.deepEqual(calls, [
    { user: 'alice', join: { uid: 'alice', channel: 'room' }, url: '/?token=secret-alice' },
    { user: 'bob', join: { uid: 'bob', channel: 'room' }, url: '/?token=secret-bob' }
  ])
  alice.close()
  bob.close()
  await app.close()
})

test('false closes with 1008 "forbidden", counted, before the member enters or sees history; nothing else is disturbed', async () => {
  const { app, url } = await start((request) => request.user === 'alice')
  const alice = await TestClient.join(`${url}?token=secret-alice`, { uid: 'alice', channel: 'room' })
  await waitForMembers(app, 'room', 1)
  const stranger = await TestClient.join(url, { uid: 'stranger', channel: 'room' })
  assert.deepEqual(await stranger.closedWithin(), { code: 1008, reason: 'forbidden' })
  assert.equal(stranger.pending, 0, 'the refused client saw no history')
  assert.equal(app.mles.metrics().rejected_authorize, 1)
  assert.equal(app.mles.history('room').length, 1, 'no join frame of the refused client is stored')
  // the member is undisturbed
  app.mles.publish('room', 'still here')
  assert.equal((await alice.next()).text, 'still here')
  alice.close()
  await app.close()
})

test('with a key, the SipHash check comes first: a bad auth never reaches authorize', async () => {
  let calls = 0
  const { app, url } = await start(() => { calls++; return true }, { key: 'shared' })
  const bad = await TestClient.join(url, { uid: 'a', channel: 'c', auth: computeAuth('a', 'c', 'guess') })
  assert.equal((await bad.closedWithin()).code, 1008)
  assert.equal(calls, 0)
  const good = await TestClient.join(url, { uid: 'a', channel: 'c', auth: computeAuth('a', 'c', 'shared') })
  await waitForMembers(app, 'c', 1)
  assert.equal(calls, 1)
  good.close()
  await app.close()
})

test('a throwing, rejecting or nonsensical authorize closes that join with 1011, logged and counted; other members carry on', async () => {
  const answers: Record<string, () => ReturnType<MlesAuthorize>> = {
    throws: () => { throw new Error('database down') },
    rejects: async () => { throw new Error('session store down') },
    string: () => 'yes' as never,
    undefined: () => undefined as never,
    null: async () => null as never,
    badUid: () => ({ uid: 42 }) as never,
    badPublish: () => ({ publish: 'no' }) as never
  }
  const { app, url, log } = await start((_request, join) => join.channel === 'ok' ? true : answers[join.channel]())
  const member = await TestClient.join(url, { uid: 'm', channel: 'ok' })
  const listener = await TestClient.join(url, { uid: 'l', channel: 'ok' })
  assert.equal((await listener.next()).text, '{"uid":"m","channel":"ok"}')
  await waitForMembers(app, 'ok', 2)
  for (const name of Object.keys(answers)) {
    const client = await TestClient.join(url, { uid: 'x', channel: name })
    assert.deepEqual(await client.closedWithin(), { code: 1011, reason: 'internal error' }, name)
  }
  assert.equal(app.mles.metrics().authorize_errors, Object.keys(answers).length)
  assert.equal(app.mles.metrics().rejected_authorize, 0)
  // One line at error for the minute, however many failed: a database down is not a logging storm.
  const errors = log.filter((line) => line.level === 50)
  assert.equal(errors.length, 1)
  assert.match(errors[0].msg, /^mles: authorize failed; closing the connection with 1011 \(logged at most once a minute\)$/)
  assert.equal(errors[0].err?.message, 'database down')
  member.send('after all that')
  assert.equal((await listener.next()).text, 'after all that')
  member.close()
  listener.close()
  await app.close()
})

test('no answer within authorizeTimeoutMs closes with 1008 "authorization timeout"; a late answer changes nothing', async () => {
  let release: (() => void) | undefined
  const { app, url } = await start(async () => {
    await new Promise<void>((resolve) => { release = resolve })
    return true
  }, { authorizeTimeoutMs: 100 })
  const started = Date.now()
  const client = await TestClient.join(url, { uid: 'slow', channel: 'c' })
  assert.deepEqual(await client.closedWithin(), { code: 1008, reason: 'authorization timeout' })
  assert.ok(Date.now() - started >= 90)
  assert.equal(app.mles.metrics().rejected_authorize, 1)
  release?.()
  await sleep(20)
  assert.equal(app.mles.channels().find((channel) => channel.name === 'c')?.members ?? 0, 0)
  assert.equal(app.mles.history('c').length, 0)
  await app.close()
})

test('frames sent while the join is pending are held in order and published once the member is in', async () => {
  const { app, url } = await start(async (_request, join) => {
    if (join.uid === 'slow') await sleep(150)
    return true
  })
  const listener = await TestClient.join(url, { uid: 'listener', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const slow = await TestClient.connect(url)
  slow.send(JSON.stringify({ uid: 'slow', channel: 'c' }))
  for (let i = 0; i < 50; i++) slow.send(`early #${i}`)
  slow.send(Buffer.from([1, 2, 3]))
  const texts = await listener.texts(51)
  assert.deepEqual(texts, Array.from({ length: 50 }, (_, i) => `early #${i}`).concat('\u0001\u0002\u0003'))
  const history = app.mles.history('c')
  assert.equal(history.length, 53)
  assert.equal(history[1].data.toString(), '{"uid":"slow","channel":"c"}', 'the join frame comes before the held frames')
  assert.equal(history[52].isBinary, true)
  listener.close()
  slow.close()
  await app.close()
})

test('frames held while pending are bounded: past 256 they are dropped and counted', async () => {
  const { app, url } = await start(async (_request, join) => {
    if (join.uid === 'slow') await sleep(200)
    return true
  })
  const listener = await TestClient.join(url, { uid: 'listener', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  const slow = await TestClient.connect(url)
  slow.send(JSON.stringify({ uid: 'slow', channel: 'c' }))
  for (let i = 0; i < 300; i++) slow.send(`#${i}`)
  await waitFor(() => app.mles.metrics().dropped_messages_rate === 44, '44 frames dropped')
  const texts = await listener.texts(256)
  assert.equal(texts[255], '#255')
  slow.send('after')
  assert.equal((await listener.next()).text, 'after')
  listener.close()
  slow.close()
  await app.close()
})

test('a client that closes while its join is pending leaves no trace', async () => {
  let answer: ((value: boolean) => void) | undefined
  const joins: string[] = []
  const { app, url } = await start(async () => await new Promise<boolean>((resolve) => { answer = resolve }))
  app.mles.on('join', (event) => { joins.push(event.uid) })
  const client = await TestClient.connect(url)
  client.send(JSON.stringify({ uid: 'gone', channel: 'c' }))
  client.send('never published')
  await waitFor(() => answer !== undefined, 'authorize called')
  client.close()
  await client.closedWithin()
  await waitFor(() => app.mles.metrics().active_connections === 0, 'the connection gone')
  answer?.(true)
  await sleep(30)
  assert.equal(app.mles.history('c').length, 0)
  assert.equal(app.mles.channels().find((channel) => channel.name === 'c')?.members ?? 0, 0)
  assert.deepEqual(await app.mles.members('c'), [])
  assert.deepEqual(joins, [])
  assert.equal(app.mles.metrics().total_messages_received, 0)
  assert.equal(app.mles.metrics().rejected_authorize, 0)
  await app.close()
})

test('a returned uid binds the connection: a join as another uid is refused with 1008 "uid not allowed"', async () => {
  const { app, url } = await start((request) => request.user === null ? false : { uid: request.user })
  const mallory = await TestClient.join(`${url}?token=secret-mallory`, { uid: 'alice', channel: 'c' })
  assert.deepEqual(await mallory.closedWithin(), { code: 1008, reason: 'uid not allowed' })
  assert.equal(app.mles.metrics().rejected_authorize, 1)
  const alice = await TestClient.join(`${url}?token=secret-alice`, { uid: 'alice', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  assert.deepEqual(await app.mles.members('c'), ['alice'])
  alice.close()
  await app.close()
})

test('publish: false makes a read-only member: it gets history and every frame, its own frames reach no one and are counted', async () => {
  const { app, url } = await start((request, join) => join.channel === `user:${request.user ?? ''}` ? { uid: request.user ?? '', publish: false } : true)
  app.mles.publish('user:alice', 'welcome back')
  const seen: string[] = []
  app.mles.subscribe('user:alice', (frame) => { if (!frame.join) seen.push(frame.data.toString()) })
  const other = await TestClient.join(url, { uid: 'spy', channel: 'user:alice' }) // authorize says true for it: it sees what alice's channel gets
  const alice = await TestClient.join(`${url}?token=secret-alice`, { uid: 'alice', channel: 'user:alice' })
  assert.equal((await alice.next()).text, 'welcome back')
  assert.equal((await alice.next()).text, '{"uid":"spy","channel":"user:alice"}')
  await waitForMembers(app, 'user:alice', 2)
  alice.send('can I speak?')
  alice.send(Buffer.from([0]))
  app.mles.publish('user:alice', 'someone logged in')
  assert.equal((await alice.next()).text, 'someone logged in')
  assert.equal((await other.next()).text, 'welcome back')
  assert.equal((await other.next()).text, 'someone logged in', 'the read-only member\'s frames came before this one and reached no one')
  other.send('to alice')
  assert.equal((await alice.next()).text, 'to alice')
  assert.equal(app.mles.metrics().dropped_messages_readonly, 2)
  assert.deepEqual(seen, ['someone logged in', 'to alice'])
  assert.ok(!app.mles.history('user:alice').some((frame) => frame.data.toString() === 'can I speak?'))
  alice.close()
  other.close()
  await app.close()
})

test('authorize without allowedOrigins warns once at registration; with allowedOrigins it does not', async () => {
  for (const [options, warnings] of [[{ authorize: () => true }, 1], [{ authorize: () => true, allowedOrigins: ['https://a.example'] }, 0], [{}, 0]] as const) {
    const log = capturedLog()
    const app = Fastify({ logger: { level: 'warn', stream: log.stream } })
    await app.register(mles, options)
    await app.ready()
    const warned = log.lines.filter((line) => line.level === 40 && /authorize is set but allowedOrigins is not/.test(line.msg))
    assert.equal(warned.length, warnings, JSON.stringify(Object.keys(options)))
    await app.close()
  }
})

test('bad authorize options fail the registration with the option named', async () => {
  for (const [options, pattern] of [
    [{ authorize: true }, /option "authorize" must be a function/],
    [{ authorizeTimeoutMs: 0 }, /option "authorizeTimeoutMs" must be an integer from 1/],
    [{ authorizeTimeoutMs: 1.5 }, /option "authorizeTimeoutMs"/]
  ] as const) {
    const app = Fastify({ logger: false })
    await assert.rejects(async () => { await app.register(mles, options as never).ready() }, pattern)
    await app.close()
  }
})
