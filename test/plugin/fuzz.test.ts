import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { TestClient } from '../helpers/client.js'

// Hostile first frames over real sockets: the server must answer each with a
// close code or a join, and keep serving everyone else.
const hostileHeader = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ data: Buffer.from(bytes), binary: true })),
  fc.string({ unit: 'grapheme', maxLength: 200 }).map((text) => ({ data: Buffer.from(text), binary: false })),
  fc.jsonValue({ maxDepth: 4 }).map((value) => ({ data: Buffer.from(JSON.stringify(value) ?? 'null'), binary: false })),
  fc.record({
    uid: fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.constant(null), fc.string({ unit: 'grapheme', maxLength: 5 })),
    channel: fc.oneof(fc.constant('fuzz'), fc.string({ maxLength: 10 }), fc.array(fc.string())),
    auth: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 20 }), fc.integer())
  }, { requiredKeys: [] }).map((value) => ({ data: Buffer.from(JSON.stringify(value)), binary: false })),
  fc.constantFrom(
    { data: Buffer.from('{"__proto__":{"uid":"p","channel":"fuzz"}}'), binary: false },
    { data: Buffer.from('{"uid":"a","channel":"fuzz","constructor":{"prototype":{"x":1}}}'), binary: false },
    { data: Buffer.from('['.repeat(100_000)), binary: false },
    { data: Buffer.from('{"uid":"' + 'u'.repeat(500_000) + '","channel":"fuzz"}'), binary: false }
  )
)

test('fuzz: hostile join frames over the wire never disturb the server', async () => {
  const { app, url } = await startMles({ perIpLimit: 0 })
  const a = await TestClient.join(url, { uid: 'steady-a', channel: 'steady' })
  await waitForMembers(app, 'steady', 1)
  const b = await TestClient.join(url, { uid: 'steady-b', channel: 'steady' })
  await waitForMembers(app, 'steady', 2)
  await b.next()

  const samples = fc.sample(hostileHeader, { numRuns: 300, seed: 42 })
  let joined = 0
  let refused = 0
  await Promise.all(samples.map(async ({ data, binary }, index) => {
    const client = await TestClient.connect(url)
    client.send(data, binary)
    const outcome = await Promise.race([client.closed, new Promise<null>((resolve) => setTimeout(() => resolve(null), 1000))])
    if (outcome === null) {
      joined++
      client.close()
    } else {
      refused++
      assert.ok([1003, 1007, 1008, 1009].includes(outcome.code), `sample ${index}: close code ${outcome.code}`)
      assert.ok(outcome.reason.length > 0, `sample ${index}: a reason`)
    }
  }))
  assert.equal(joined + refused, samples.length)
  assert.ok(refused > 100, `${refused} refused`)

  a.send('still alive')
  assert.equal((await b.next()).text, 'still alive')
  await waitFor(() => app.mles.metrics().active_connections === 2, 'every fuzz connection to be gone')
  a.close()
  b.close()
  await app.close()
})
