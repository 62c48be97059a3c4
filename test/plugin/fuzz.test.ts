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

// Whatever an app's authorize answers, and whatever Origin a client sends, each
// connection ends in a join or a clear refusal, and nobody else notices.
const authorizeAnswer = fc.oneof(
  fc.boolean(),
  fc.anything({ maxDepth: 2 }),
  fc.record({ uid: fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.constant(undefined)), publish: fc.oneof(fc.boolean(), fc.string(), fc.constant(undefined)) }, { requiredKeys: [] }),
  fc.constantFrom('throw', 'reject', 'hang')
)
const originHeader = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('https://ok.example', 'HTTPS://OK.EXAMPLE:443', 'null', '', 'https://ok.example.evil', 'https://ok.example/x', 'http://ok.example'),
  fc.string({ maxLength: 40 }).filter((text) => /^[\x21-\x7e]*$/.test(text))
)

test('fuzz: any authorize answer and any Origin end in a join, a 403 or a close with a code and a reason', async () => {
  const samples = fc.sample(fc.record({ answer: authorizeAnswer, origin: originHeader, uid: fc.constantFrom('u', 'v') }), { numRuns: 200, seed: 99 })
  const { app, url } = await startMles({
    perIpLimit: 0,
    perIpChannelLimit: 0,
    authorizeTimeoutMs: 200,
    allowedOrigins: ['https://ok.example'],
    authorize: async (request, join) => {
      if (join.channel === 'steady') return true
      const { answer } = samples[Number(new URL(request.url, 'http://x').searchParams.get('i'))]
      if (answer === 'throw') throw new Error('fuzzed')
      if (answer === 'reject') return await Promise.reject(new Error('fuzzed'))
      if (answer === 'hang') return await new Promise(() => {})
      return answer as never
    }
  })
  const a = await TestClient.join(url, { uid: 'steady-a', channel: 'steady' })
  await waitForMembers(app, 'steady', 1)
  const b = await TestClient.join(url, { uid: 'steady-b', channel: 'steady' })
  await b.next()
  const outcomes = new Map<string, number>()
  const count = (outcome: string): void => { outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1) }
  await Promise.all(samples.map(async ({ origin, uid }, index) => {
    let client: TestClient
    try {
      client = await TestClient.connect(`${url}?i=${index}`, 'mles-websocket', origin === undefined ? {} : { headers: { origin } })
    } catch (error) {
      const status = (error as { refused?: { status: number } }).refused?.status
      assert.equal(status, 403, `sample ${index}: ${String(error)}`)
      count('403')
      return
    }
    client.send(JSON.stringify({ uid, channel: `fuzz${index}` }))
    client.send('early frame')
    const outcome = await Promise.race([client.closed, new Promise<null>((resolve) => setTimeout(() => resolve(null), 600))])
    if (outcome === null) {
      count('joined')
      client.close()
      return
    }
    assert.ok([1008, 1011].includes(outcome.code), `sample ${index}: close code ${outcome.code}`)
    assert.ok(['forbidden', 'uid not allowed', 'authorization timeout', 'internal error'].includes(outcome.reason), `sample ${index}: ${outcome.reason}`)
    count(`${outcome.code} ${outcome.reason}`)
  }))
  for (const outcome of ['403', 'joined', '1008 forbidden', '1008 uid not allowed', '1008 authorization timeout', '1011 internal error']) {
    assert.ok((outcomes.get(outcome) ?? 0) > 0, `some samples end in ${outcome}: ${JSON.stringify([...outcomes])}`)
  }
  a.send('still alive')
  assert.equal((await b.next()).text, 'still alive')
  await waitFor(() => app.mles.metrics().active_connections === 2, 'every fuzz connection to be gone')
  a.close()
  b.close()
  await app.close()
})
