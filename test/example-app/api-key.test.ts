import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { makeWebRoot, startStandalone } from '../helpers/standalone.js'
import { parseCommandLine } from '../../example-app/config.js'
import { config, failure } from '../helpers/command-line.js'

const www = makeWebRoot({ 'a.test/index.html': '<h1>A</h1>' })
const base = ['-d', 'a.test', '-w', www]
const KEY = 'an-api-key-of-some-length'

test('--api-key and MLES_API_KEY: off without either, the flag wins, and the help names both', () => {
  assert.equal(config(base).apiKey, undefined)
  assert.equal(config(base, { MLES_API_KEY: '' }).apiKey, undefined)
  assert.equal(config([...base, '--api-key', KEY]).apiKey, KEY)
  assert.equal(config(base, { MLES_API_KEY: KEY }).apiKey, KEY)
  assert.equal(config([...base, '--api-key', KEY], { MLES_API_KEY: 'another-key-from-the-env' }).apiKey, KEY)
  const help = parseCommandLine(['--help'], {}, '1.2.3')
  assert.ok(help.kind === 'exit' && help.output.includes('--api-key') && help.output.includes('MLES_API_KEY'))
})

test('a key shorter than 16 characters or with spaces: one line, exit 2', () => {
  assert.match(failure([...base, '--api-key', 'short']), /^mles: --api-key must be at least 16 characters without spaces \(got 5 characters\)\n$/)
  assert.match(failure([...base, '--api-key', '0123456789abcde']), /--api-key must be at least 16 characters/)
  assert.match(failure([...base, '--api-key', 'a key with spaces in it']), /--api-key must be at least 16 characters without spaces/)
  assert.match(failure(base, { MLES_API_KEY: 'short' }), /^mles: MLES_API_KEY must be at least 16 characters/)
  assert.match(failure([...base, '--api-key']), /argument missing/)
})

test('the command refuses a short key before starting', async () => {
  const cli = runCli([...base, '--no-tls', '--host', '127.0.0.1', '--port', '0', '--api-key', 'short'])
  assert.equal(await cli.exited, 2)
  assert.equal(cli.stderr(), 'mles: --api-key must be at least 16 characters without spaces (got 5 characters)\n')
})

test('startServer with apiKey: a publish through the API reaches a member; without it the API is off', async () => {
  const server = await startStandalone({ domains: ['a.test'], wwwroot: www, apiKey: KEY })
  const origin = `http://127.0.0.1:${server.address.port}`
  const member = await TestClient.join(`ws://127.0.0.1:${server.address.port}/`, { uid: 'u', channel: 'news' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const answer = await fetch(`${origin}/_mles/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'news', data: 'from a backend' })
  })
  assert.equal(answer.status, 200)
  assert.deepEqual(await answer.json(), { ok: true })
  assert.equal((await member.next()).text, 'from a backend')
  const members = await fetch(`${origin}/_mles/api/channels/news/members`, { headers: { authorization: `Bearer ${KEY}` } })
  assert.deepEqual(await members.json(), { members: ['u'] })
  assert.equal((await fetch(`${origin}/_mles/api/channels`)).status, 401)
  member.close()

  const plain = await startStandalone({ domains: ['a.test'], wwwroot: www })
  assert.equal((await fetch(`http://127.0.0.1:${plain.address.port}/_mles/api/channels`, { headers: { authorization: `Bearer ${KEY}` } })).status, 404)
})
