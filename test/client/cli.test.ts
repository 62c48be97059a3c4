import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { runClientCli, CLIENT_CLI } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { startMles, waitFor, waitForMembers } from '../helpers/server.js'
import { makeCa, issue } from '../helpers/certs.js'
import { makeWebRoot, startStandalone } from '../helpers/standalone.js'

test('pipe mode: stdin lines are sent, frames printed one per line, EOF exits 0', async () => {
  const { app, url } = await startMles()
  const listener = await TestClient.join(url, { uid: 'listener', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  app.mles.publish('c', 'from history')
  app.mles.publish('c', Buffer.from([0xde, 0xad]))
  const cli = runClientCli(['-s', url, '-c', 'c', '-u', 'piper'])
  cli.child.stdin?.end('hello\nworld\n')
  assert.equal(await cli.exited, 0, cli.stderr())
  assert.equal(cli.stdout(), '{"uid":"listener","channel":"c"}\nfrom history\ndead\n')
  assert.equal((await listener.next()).text, 'from history')
  await listener.next()
  assert.deepEqual([(await listener.next()).text, (await listener.next()).text], ['hello', 'world'])
  listener.close()
  await app.close()
})

test('--raw writes binary frames as bytes', async () => {
  const { app, url } = await startMles()
  app.mles.publish('c', Buffer.from([1, 2, 3]))
  const cli = runClientCli(['-s', url, '-c', 'c', '-u', 'raw', '--raw'])
  cli.child.stdin?.end()
  assert.equal(await cli.exited, 0)
  assert.deepEqual([...Buffer.from(cli.stdout(), 'latin1')], [1, 2, 3])
  await app.close()
})

test('every refusal: one error line and a non-zero exit', async () => {
  const { app, url } = await startMles({ key: 'k' })
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['-s', 'ws://127.0.0.1:9/', '-c', 'c', '-u', 'u'], { MLES_KEY: 'k' }, /^mles-client: cannot connect to ws:\/\/127\.0\.0\.1:9\/: .*ECONNREFUSED/],
    [['-s', url, '-c', 'c', '-u', 'u'], { MLES_KEY: 'wrong' }, /^mles-client: the server closed the connection: 1008 authentication failed$/]
  ]
  for (const [args, env, message] of cases) {
    const cli = runClientCli(args, env)
    cli.child.stdin?.end('x\n')
    assert.equal(await cli.exited, 1, args.join(' '))
    assert.equal(cli.stderr().trim().split('\n').length, 1)
    assert.match(cli.stderr().trim(), message)
  }
  // duplicate uid
  const holder = await TestClient.join(url, JSON.stringify({ uid: 'dup', channel: 'c', auth: (await import('../../src/index.js')).computeAuth('dup', 'c', 'k') }))
  await waitForMembers(app, 'c', 1)
  const duplicate = runClientCli(['-s', url, '-c', 'c', '-u', 'dup'], { MLES_KEY: 'k' })
  duplicate.child.stdin?.end('x\n')
  assert.equal(await duplicate.exited, 1)
  assert.match(duplicate.stderr(), /^mles-client: the server closed the connection: 1008 uid already joined on this channel\n$/)
  // closed by the server while connected
  const connected = runClientCli(['-s', url, '-c', 'c', '-u', 'stays'], { MLES_KEY: 'k' })
  await waitForMembers(app, 'c', 2)
  await app.close()
  assert.equal(await connected.exited, 1)
  assert.match(connected.stderr(), /^mles-client: the server closed the connection: 1001 server shutting down\n$/)
  holder.close()
  // bad flags
  for (const args of [['-c', 'c', '-u', 'u'], ['-s', 'http://x/', '-c', 'c', '-u', 'u'], ['-s', 'ws://x/', '-u', 'u'], ['--bogus']]) {
    const cli = runClientCli(args, {}, 'ignore')
    assert.equal(await cli.exited, 2, args.join(' '))
    assert.match(cli.stderr(), /^mles-client: .*\n$/)
  }
})

test('--insecure accepts a self-signed server; without it the certificate is refused', async () => {
  const ca = makeCa()
  const cert = issue(ca, ['localhost'])
  const server = await startStandalone({ domains: ['localhost'], wwwroot: makeWebRoot({ 'localhost/index.html': 'x' }), tls: 'files', tlsCert: cert.cert, tlsKey: cert.key })
  const url = `wss://localhost:${server.address.port}/`
  const refused = runClientCli(['-s', url, '-c', 'c', '-u', 'u'], { NODE_EXTRA_CA_CERTS: '' })
  refused.child.stdin?.end('x\n')
  assert.equal(await refused.exited, 1)
  assert.match(refused.stderr(), /cannot connect to .*certificate/i)
  const insecure = runClientCli(['-s', url, '-c', 'c', '-u', 'u', '--insecure'])
  insecure.child.stdin?.end('x\n')
  assert.equal(await insecure.exited, 0, insecure.stderr())
  assert.equal(server.app.mles.history('c').length, 2)
})

test('interactive on a terminal: lines sent, frames shown with the sender, Ctrl-D leaves', async () => {
  const { app, url } = await startMles()
  const peer = await TestClient.join(url, { uid: 'peer', channel: 'c' })
  await waitForMembers(app, 'c', 1)
  // `script` gives the command a pseudo-terminal; we type into it.
  const command = `${process.execPath} --import tsx ${CLIENT_CLI} -s ${url} -c c -u tty`
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], cwd: process.cwd() })
  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL')
    await app.close()
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await waitFor(() => output.includes('joined c on'), 'the join line', 10_000)
  await waitFor(() => output.includes('* peer joined'), 'the replayed join frame shown as a join')
  child.stdin.write('typed line\r')
  assert.equal((await peer.next()).text, 'typed line')
  peer.send(JSON.stringify({ uid: 'peer', message: 'hi tty' }))
  await waitFor(() => output.includes('peer: {"uid":"peer","message":"hi tty"}'), 'the frame shown with its sender')
  child.stdin.write('\u0004')
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  assert.equal(code, 0)
  peer.close()
})
