import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TestClient } from '../helpers/client.js'

const script = fileURLToPath(new URL('../../example-app/embed.mjs', import.meta.url))

test('the README\'s embedding example serves its page and Mles on one port', async () => {
  // Runs the built package (dist/, made by `npm run build`), as a user would.
  const child = spawn(process.execPath, [script], { env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const origin = await new Promise<string>((resolve, reject) => {
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        const match = /Mles chat on (http:\/\/\S+)\//.exec(output)
        if (match !== null) resolve(match[1])
      })
      child.on('exit', (code) => { reject(new Error(`example exited with ${code}: ${output}`)) })
    })
    const page = await fetch(origin + '/')
    assert.equal(page.status, 200)
    assert.match(await page.text(), /new WebSocket\(.*'mles-websocket'\)/)

    const url = origin.replace(/^http/, 'ws') + '/'
    const alice = await TestClient.join(url, { uid: 'alice', channel: 'lobby' })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const bob = await TestClient.join(url, { uid: 'bob', channel: 'lobby' })
    assert.equal((await bob.next()).text, '{"uid":"alice","channel":"lobby"}')
    await new Promise((resolve) => setTimeout(resolve, 100))
    alice.send('/time')
    assert.equal((await bob.next()).text, '/time')
    const reply = JSON.parse((await bob.next()).text)
    assert.equal(reply.uid, 'server')
    assert.ok(!Number.isNaN(Date.parse(reply.message)))
    alice.close()
    bob.close()
  } finally {
    child.kill()
  }
})
