import { test } from 'node:test'
import assert from 'node:assert/strict'
import { capturedLog } from '../helpers/log.js'
import type { MlesMemberEvent } from '../../src/index.js'
import { sleep, startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'
import { V1TestClient } from '../helpers/v1-client.js'

test('join and leave events carry channel, uid, ip and origin; members() lists the uids connected now', async () => {
  const { app, url } = await startMles({ perIpLimit: 0 })
  const events: Array<[string, MlesMemberEvent]> = []
  app.mles.on('join', (event) => { events.push(['join', event]) })
  app.mles.on('leave', (event) => { events.push(['leave', event]) })
  const bob = await TestClient.join(url, { uid: 'bob', channel: 'room' }, { headers: { origin: 'https://site.example' } })
  const alice = await TestClient.join(url, { uid: 'alice', channel: 'room' })
  assert.equal((await alice.next()).text, '{"uid":"bob","channel":"room"}')
  await waitForMembers(app, 'room', 2)
  assert.deepEqual(await app.mles.members('room'), ['alice', 'bob'])
  assert.deepEqual(await app.mles.members('nobody-here'), [])
  bob.close()
  await waitFor(() => events.length === 3, 'the leave event')
  assert.deepEqual(await app.mles.members('room'), ['alice'])
  assert.deepEqual(events, [
    ['join', { channel: 'room', uid: 'bob', ip: '127.0.0.1', origin: 'https://site.example' }],
    ['join', { channel: 'room', uid: 'alice', ip: '127.0.0.1', origin: null }],
    ['leave', { channel: 'room', uid: 'bob', ip: '127.0.0.1', origin: 'https://site.example' }]
  ])
  assert.ok(Object.isFrozen(events[0][1]))
  // refused joins make no event
  const duplicate = await TestClient.join(url, { uid: 'alice', channel: 'room' })
  assert.equal((await duplicate.closedWithin()).code, 1008)
  await sleep(20)
  assert.equal(events.length, 3)
  // the server closing a member is a leave too
  await app.close()
  assert.deepEqual(events[3], ['leave', { channel: 'room', uid: 'alice', ip: '127.0.0.1', origin: null }])
})

test('the join event comes after the history replay; a slow consumer dropped by the hub leaves too', async () => {
  const { app, url } = await startMles({ maxBufferedBytes: 64 * 1024, maxMessageBytes: 64 * 1024, messagesPerSecond: 0 })
  app.mles.publish('c', 'old')
  const order: string[] = []
  let joined: (() => void) | undefined
  const inRoom = new Promise<void>((resolve) => { joined = resolve })
  app.mles.on('join', (event) => { order.push(`join ${event.uid} after ${app.mles.channels().find((channel) => channel.name === 'c')?.historySize ?? 0} frames`); joined?.() })
  app.mles.on('leave', (event) => { order.push(`leave ${event.uid}`) })
  const slow = await TestClient.join(url, { uid: 'slow', channel: 'c' })
  await inRoom
  assert.equal((await slow.next()).text, 'old')
  slow.ws.pause()
  ;(slow.ws as unknown as { _socket: { pause: () => void } })._socket.pause()
  const big = 'x'.repeat(60 * 1024)
  for (let i = 0; i < 200 && app.mles.metrics().dropped_slow_consumers === 0; i++) {
    app.mles.publish('c', big)
    await sleep(1)
  }
  await waitFor(() => order.includes('leave slow'), 'the leave of the dropped member')
  assert.deepEqual(order, ['join slow after 2 frames', 'leave slow'], 'the event comes once the replay is sent and the join frame stored')
  await app.close()
})

test('a throwing or rejecting listener is logged and changes nothing; off() and the returned function remove listeners', async () => {
  const { lines, stream } = capturedLog()
  const { app, url } = await startMles({}, undefined, { logger: { level: 'error', stream } })
  const calls: string[] = []
  app.mles.on('join', () => { throw new Error('listener bug') })
  app.mles.on('join', async () => { throw new Error('async listener bug') })
  const second = (event: MlesMemberEvent): void => { calls.push(`second ${event.uid}`) }
  app.mles.on('join', second)
  const removeThird = app.mles.on('join', (event) => { calls.push(`third ${event.uid}`) })
  const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
  const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
  assert.equal((await b.next()).text, '{"uid":"a","channel":"c"}', 'the joins went on')
  await waitFor(() => lines.length === 4, 'four listener errors logged')
  assert.deepEqual(lines.map((line) => line.msg), Array(4).fill("mles: a 'join' listener threw"))
  app.mles.off('join', second)
  removeThird()
  removeThird()
  const c = await TestClient.join(url, { uid: 'c', channel: 'c' })
  await waitForMembers(app, 'c', 3)
  assert.deepEqual(calls, ['second a', 'third a', 'second b', 'third b'])
  b.send('still fine')
  assert.equal((await a.next()).text, 'still fine')
  assert.throws(() => app.mles.on('joined' as never, () => {}), /no event "joined"; the events are 'join' and 'leave'/)
  assert.throws(() => app.mles.on('join', 'f' as never), /listener must be a function/)
  await assert.rejects(app.mles.members(''), /channel must be a non-empty ASCII string/)
  for (const client of [a, b, c]) client.close()
  await app.close()
})

test('v1 TCP members make join and leave events and are listed by members()', async () => {
  const { app, url } = await startMles({ v1: { port: 0, host: '127.0.0.1' }, messagesPerSecond: 0 })
  const v1Port = app.mles.v1Address()?.port ?? 0
  const events: string[] = []
  app.mles.on('join', (event) => { events.push(`join ${event.uid} ${event.ip} ${String(event.origin)}`) })
  app.mles.on('leave', (event) => { events.push(`leave ${event.uid}`) })
  const old = await V1TestClient.join(v1Port, 'oldie', 'mixed')
  const ws = await TestClient.join(url, { uid: 'web', channel: 'mixed' })
  await waitForMembers(app, 'mixed', 2)
  assert.deepEqual(await app.mles.members('mixed'), ['oldie', 'web'])
  old.close()
  await waitFor(() => events.length === 3, 'three events')
  assert.deepEqual(events, ['join oldie 127.0.0.1 null', 'join web 127.0.0.1 null', 'leave oldie'])
  ws.close()
  await app.close()
})
