import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import mles from '../../src/index.js'
import { startMles } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

const withOrigin = (origin: string): { headers: Record<string, string> } => ({ headers: { origin } })

async function joins (url: string, origin: string | null): Promise<void> {
  const client = await TestClient.connect(url, 'mles-websocket', origin === null ? {} : withOrigin(origin))
  client.close()
}

test('allowedOrigins as a list: the listed origins and non-browser clients pass, every other Origin is refused with 403 before the upgrade, and counted', async () => {
  const { app, url } = await startMles({ allowedOrigins: ['https://Example.com', 'http://localhost:3000', 'https://app.example.com:443'] })
  // allowed: exact, other case, default port spelled out, trailing slash, no Origin at all
  for (const origin of ['https://example.com', 'HTTPS://EXAMPLE.COM', 'https://example.com:443', 'https://example.com/', 'http://localhost:3000', 'https://app.example.com']) {
    await joins(url, origin)
  }
  await joins(url, null)
  const refusedOrigins = [
    'null', // sandboxed frames, file: pages
    'http://example.com', // other scheme
    'https://example.com:8443', // other port
    'https://evil.example.com', // other host
    'https://example.com.evil.org',
    'http://localhost:3001',
    'http://localhost', // port missing
    'https://example.com/path', // not an origin
    'https://user@example.com',
    'ws://example.com',
    ''
  ]
  for (const origin of refusedOrigins) {
    const refused = await refusedUpgrade(url, 'mles-websocket', withOrigin(origin))
    assert.equal(refused.status, 403, origin)
    const body = JSON.parse(refused.body) as { statusCode: number, error: string, message: string }
    assert.equal(body.error, 'Forbidden')
    assert.match(body.message, /^origin ".*" is not allowed$/)
  }
  assert.equal(app.mles.metrics().rejected_origin, refusedOrigins.length)
  assert.equal(app.mles.metrics().active_connections, 0, 'refused upgrades never became connections')
  await app.close()
})

test('requireOrigin refuses upgrades without Origin; the listed ones still pass', async () => {
  const { app, url } = await startMles({ allowedOrigins: ['https://example.com'], requireOrigin: true })
  const refused = await refusedUpgrade(url)
  assert.equal(refused.status, 403)
  assert.match(refused.body, /an Origin header is required/)
  await joins(url, 'https://example.com')
  assert.equal(app.mles.metrics().rejected_origin, 1)
  await app.close()

  const any = await startMles({ requireOrigin: true })
  assert.equal((await refusedUpgrade(any.url)).status, 403)
  await joins(any.url, 'https://anywhere.example')
  await any.app.close()
})

test('allowedOrigins as a function decides with the raw header and the request, sync or async; a throwing one gives 500 and disturbs nothing', async () => {
  const seen: Array<[string, string]> = []
  const { app, url } = await startMles({
    allowedOrigins: async (origin, request) => {
      seen.push([origin, request.url])
      if (origin === 'https://boom.example') throw new Error('boom')
      await new Promise((resolve) => setTimeout(resolve, 5))
      return origin.endsWith('.trusted.example')
    }
  })
  await joins(url + '?x=1', 'https://a.trusted.example')
  assert.equal((await refusedUpgrade(url, 'mles-websocket', withOrigin('https://other.example'))).status, 403)
  const failed = await refusedUpgrade(url, 'mles-websocket', withOrigin('https://boom.example'))
  assert.equal(failed.status, 500)
  assert.match(failed.body, /the origin check failed/)
  await joins(url, null) // no Origin: the function is not asked
  assert.deepEqual(seen, [['https://a.trusted.example', '/?x=1'], ['https://other.example', '/'], ['https://boom.example', '/']])
  assert.equal(app.mles.metrics().rejected_origin, 1)
  await app.close()

  const sync = await startMles({ allowedOrigins: (origin) => origin === 'https://ok.example' })
  await joins(sync.url, 'https://ok.example')
  assert.equal((await refusedUpgrade(sync.url, 'mles-websocket', withOrigin('https://no.example'))).status, 403)
  await sync.app.close()
})

test('without allowedOrigins every origin passes (the default), and "*" in the list means the same', async () => {
  for (const options of [{}, { allowedOrigins: ['*'] }, { allowedOrigins: ['https://x.example', '*'] }]) {
    const { app, url } = await startMles(options)
    await joins(url, 'https://anything.example')
    await joins(url, 'null')
    assert.equal(app.mles.metrics().rejected_origin, 0)
    await app.close()
  }
})

test('bad allowedOrigins and requireOrigin fail the registration with the option named', async () => {
  for (const [options, pattern] of [
    [{ allowedOrigins: 'https://example.com' }, /option "allowedOrigins" must be an array of origins or a function/],
    [{ allowedOrigins: ['example.com'] }, /option "allowedOrigins" must hold origins like/],
    [{ allowedOrigins: ['https://example.com/app'] }, /got "https:\/\/example.com\/app"/],
    [{ allowedOrigins: [42] }, /got 42/],
    [{ requireOrigin: 'yes' }, /option "requireOrigin" must be true or false/]
  ] as const) {
    const app = Fastify({ logger: false })
    await assert.rejects(async () => { await app.register(mles, options as never).ready() }, pattern)
    await app.close()
  }
})
