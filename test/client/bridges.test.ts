import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectAsync } from 'mqtt'
import { MlesClient, MlesMqttBridge, frameText } from '../../src/client/index.js'
import { runClientCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { freePort } from '../helpers/pebble.js'
import { startMles, waitFor, waitForMembers, sleep } from '../helpers/server.js'

test('mles-client --proxy-server links a channel across two servers', async () => {
  const a = await startMles()
  const b = await startMles()
  const proxy = runClientCli(['--proxy-server', a.url, '--proxy-server', b.url, '-c', 'linked', '-u', 'proxy'], {}, 'ignore')
  await waitFor(() => a.app.mles.channels()[0]?.members === 1 && b.app.mles.channels()[0]?.members === 1, 'the proxy on both servers', 10_000)
  const onA = await TestClient.join(a.url, { uid: 'alice', channel: 'linked' })
  const onB = await TestClient.join(b.url, { uid: 'bob', channel: 'linked' })
  await waitForMembers(a.app, 'linked', 2)
  await waitForMembers(b.app, 'linked', 2)
  onA.send('from a')
  let got = await onB.next()
  while (got.text !== 'from a') got = await onB.next() // forwarded join frames may come first
  onB.send(Buffer.from([9]))
  got = await onA.next()
  while (!got.isBinary) got = await onA.next()
  assert.deepEqual([...got.data], [9])
  proxy.child.kill('SIGTERM')
  assert.equal(await proxy.exited, 0)
  assert.match(proxy.stderr(), /mles-client: ws:\/\/127\.0\.0\.1:\d+\/ open/)
  onA.close()
  onB.close()
  await Promise.all([a.app.close(), b.app.close()])
})

test('proxy mode needs two servers', async () => {
  const cli = runClientCli(['--proxy-server', 'ws://127.0.0.1:1/', '-c', 'c', '-u', 'p'], {}, 'ignore')
  assert.equal(await cli.exited, 2)
  assert.match(cli.stderr(), /two or more servers/)
})

async function startMosquitto (): Promise<number> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'mles-mosquitto-'))
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n`)
  const child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' })
  child.on('error', () => {})
  after(() => { child.kill('SIGKILL') })
  await waitFor(() => child.exitCode === null && child.pid !== undefined, 'mosquitto to run')
  for (let i = 0; i < 100; i++) {
    try {
      const probe = await connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 })
      await probe.endAsync()
      return port
    } catch {
      if (child.exitCode !== null) break
      await sleep(50)
    }
  }
  throw new Error('mosquitto did not start: install the Debian package "mosquitto"')
}

test('MQTT bridge against a real Mosquitto: both directions, text and binary, no loop', async () => {
  const port = await startMosquitto()
  const broker = `mqtt://127.0.0.1:${port}`
  const { app, url } = await startMles()
  const bridge = new MlesMqttBridge({ server: url, broker, uid: 'bridge', channel: 'sensors' })
  await bridge.ready
  const mqtt = await connectAsync(broker)
  const fromMqtt: string[] = []
  mqtt.on('message', (_topic, payload) => { fromMqtt.push(payload.toString('hex')) })
  await mqtt.subscribeAsync('sensors')
  const member = new MlesClient(url, { uid: 'member', channel: 'sensors' })
  const fromMles: string[] = []
  member.on('message', (message) => { fromMles.push(message.binary ? Buffer.from(message.data as Uint8Array).toString('hex') : frameText(message)) })
  await member.ready
  await waitForMembers(app, 'sensors', 2)

  member.send('temperature 21')
  member.send(new Uint8Array([0xff, 0x00]))
  await waitFor(() => fromMqtt.length >= 2, 'Mles frames on the MQTT topic')
  assert.ok(fromMqtt.includes(Buffer.from('temperature 21').toString('hex')))
  assert.ok(fromMqtt.includes('ff00'))
  await mqtt.publishAsync('sensors', 'humidity 40')
  await mqtt.publishAsync('sensors', Buffer.from([0xc3, 0x28]))
  await waitFor(() => fromMles.length >= 2, 'MQTT messages on the Mles channel')
  assert.deepEqual(fromMles, ['humidity 40', 'c328'], 'valid UTF-8 as text, the rest as binary')
  const settled = { ...bridge.forwarded }
  await sleep(500)
  assert.deepEqual(bridge.forwarded, settled, 'nothing echoes back and forth')
  assert.deepEqual(settled, { toMqtt: 2, toMles: 2 })
  assert.equal(fromMqtt.length, 4, 'the MQTT subscriber saw its own two and the two from Mles, once each')
  await member.close()
  await bridge.close()
  await mqtt.endAsync()
  await app.close()
})

test('mles-client --mqtt-broker bridges from the command line', async () => {
  const port = await startMosquitto()
  const broker = `mqtt://127.0.0.1:${port}`
  const { app, url } = await startMles()
  const cli = runClientCli(['-s', url, '-c', 'topic', '-u', 'bridge', '--mqtt-broker', broker], {}, 'ignore')
  await waitFor(() => cli.stderr().includes('bridging'), 'the bridge', 10_000)
  const mqtt = await connectAsync(broker)
  const member = await TestClient.join(url, { uid: 'member', channel: 'topic' })
  await waitForMembers(app, 'topic', 2)
  await mqtt.publishAsync('topic', 'via mqtt')
  let got = await member.next()
  while (got.text !== 'via mqtt') got = await member.next()
  cli.child.kill('SIGTERM')
  assert.equal(await cli.exited, 0)
  member.close()
  await mqtt.endAsync()
  await app.close()
})

test('proxy mode shows a live stats line on a terminal', async () => {
  const a = await startMles()
  const b = await startMles()
  const { CLIENT_CLI } = await import('../helpers/cli.js')
  const command = `${process.execPath} --import tsx ${CLIENT_CLI} --proxy-server ${a.url} --proxy-server ${b.url} -c stats -u proxy`
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
  after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await waitFor(() => a.app.mles.channels()[0]?.members === 1 && b.app.mles.channels()[0]?.members === 1, 'linked', 10_000)
  const sender = await TestClient.join(a.url, { uid: 's', channel: 'stats' })
  await waitForMembers(a.app, 'stats', 2)
  sender.send('one')
  sender.send('two')
  await waitFor(() => /forwarded 0→1 2 {2}1→0 0/.test(output), 'the stats line counting the forwarded frames', 10_000)
  child.kill('SIGTERM')
  sender.close()
  await Promise.all([a.app.close(), b.app.close()])
})
