// The package as npm installs it: `npm pack`, then an empty folder with the
// tarball and fastify installed, production dependencies only. Everything here
// runs from that folder, never from the clone: the plugin, `npx mles`,
// `npx mles-client`, `fastify-mles/client`, the types, and the optional peer
// dependencies, first missing and then installed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { runCommand, type RunningCli } from '../helpers/cli.js'
import { TestClient } from '../helpers/client.js'
import { startRedis, type RedisProcess } from '../helpers/redis.js'
import { get } from '../helpers/standalone.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  version: string
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
}
/** The versions the clone was tested with, so the install is the lock file's (and npm's cache has them). */
const installedVersion = (name: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
const OPTIONAL_PEERS = Object.keys(manifest.peerDependencies)

let work = ''
let app = ''
let tarballFiles: string[] = []

async function npm (args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, maxBuffer: 64 * 1024 * 1024 })
  return stdout
}

function writePackageJson (folder: string): void {
  mkdirSync(folder, { recursive: true })
  writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'mles-user', version: '1.0.0', private: true, type: 'module' }) + '\n')
}

/** npm install from the cache still takes a while on a slow machine: more than the suite's 60 s per test. */
const NPM_TIMEOUT_MS = 300_000

before(async () => {
  // `npm test` has just built dist/; pack exactly that (prepare would build it again).
  work = mkdtempSync(join(tmpdir(), 'mles-packed-'))
  const packed = JSON.parse(await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], root)) as Array<{ filename: string, files: Array<{ path: string }> }>
  tarballFiles = packed[0].files.map((file) => file.path).sort()
  app = join(work, 'app')
  writePackageJson(app)
  await npm(['install', '--omit=dev', join(work, packed[0].filename), `fastify@${installedVersion('fastify')}`], app)
}, { timeout: NPM_TIMEOUT_MS })

after(() => { if (work !== '') rmSync(work, { recursive: true, force: true }) })

/** Where a pattern of the tarball's files comes from, so the list stays what users need. */
const SHIPPED: RegExp[] = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^CHANGELOG\.md$/,
  /^docs\/[\w-]+\.(md|png)$/,
  /^dist\/(src|example-app)\/([\w-]+\/)*[\w-]+\.(js|d\.ts|js\.map)$/,
  /^dist\/browser\/mles-client\.js(\.map)?$/,
  /^example-app\/www\/localhost\/[\w-]+\.(html|css|js|svg)$/
]
const REQUIRED = [
  'package.json', 'README.md', 'LICENSE', 'CHANGELOG.md',
  'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/client/index.js', 'dist/src/client/index.d.ts',
  'dist/src/client/cli.js', 'dist/example-app/cli.js', 'dist/example-app/server.d.ts', 'dist/browser/mles-client.js',
  'example-app/www/localhost/index.html'
]

test('the tarball holds what users need and nothing else', () => {
  const unexpected = tarballFiles.filter((file) => !SHIPPED.some((pattern) => pattern.test(file)))
  assert.deepEqual(unexpected, [], 'files in the tarball that users do not need')
  for (const file of REQUIRED) assert.ok(tarballFiles.includes(file), `${file} is missing from the tarball`)
  assert.ok(!tarballFiles.some((file) => /(^|\/)(test|bench)\//.test(file)), 'tests or bench sources in the tarball')
  // Source maps carry their sources, since the .ts files are not shipped.
  const map = JSON.parse(readFileSync(join(app, 'node_modules', manifest.name, 'dist/src/hub/hub.js.map'), 'utf8')) as { sourcesContent?: string[] }
  assert.ok(map.sourcesContent?.[0]?.includes('class Hub'), 'dist/src/hub/hub.js.map has no sourcesContent')
})

test('dependencies: every package the shipped code imports is a dependency or an optional peer, and every dependency is imported', () => {
  const installed = join(app, 'node_modules', manifest.name)
  const builtins = new Set(builtinModules)
  const imported = new Map<string, Set<string>>()
  for (const file of tarballFiles.filter((name) => name.startsWith('dist/') && name.endsWith('.js') && !name.startsWith('dist/browser/'))) {
    const code = readFileSync(join(installed, file), 'utf8')
    // Static imports and re-exports, dynamic imports with a literal, and the client's `const wsModule = 'ws'`.
    for (const match of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|wsModule = )['"]([^'"./][^'"]*)['"]/g)) {
      const specifier = match[1]
      if (specifier.startsWith('node:') || builtins.has(specifier)) continue
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]
      if (!imported.has(name)) imported.set(name, new Set())
      imported.get(name)?.add(file)
    }
  }
  const declared = new Set([...Object.keys(manifest.dependencies), ...OPTIONAL_PEERS])
  const undeclared = [...imported.keys()].filter((name) => !declared.has(name))
  assert.deepEqual(undeclared, [], `imported but not in dependencies: ${undeclared.map((name) => `${name} (${[...(imported.get(name) ?? [])].join(', ')})`).join('; ')}`)
  const unused = Object.keys(manifest.dependencies).filter((name) => !imported.has(name))
  assert.deepEqual(unused, [], 'dependencies no shipped file imports')
  // The optional peers are not installed with the package.
  for (const name of OPTIONAL_PEERS) assert.ok(!existsSync(join(app, 'node_modules', name)), `${name} was installed without being asked for`)
})

/** Runs `code` as an ES module in the app folder and returns its stdout. */
async function runModule (name: string, code: string): Promise<RunningCli> {
  writeFileSync(join(app, name), code)
  return runCommand(process.execPath, [name], { cwd: app, stdin: 'ignore' })
}

const PLUGIN_APP = `
import Fastify from 'fastify'
import mles from 'fastify-mles'
const app = Fastify()
await app.register(mles, JSON.parse(process.argv[2] ?? '{}'))
await app.listen({ host: '127.0.0.1', port: 0 })
console.log('listening ' + app.server.address().port)
`

test('a Fastify app registers the plugin from the installed package; two WebSocket clients exchange a frame', async () => {
  const server = await runModule('plugin-app.mjs', PLUGIN_APP)
  const [, port] = await server.waitFor(/listening (\d+)/, 20_000)
  const url = `ws://127.0.0.1:${port}/`
  const alice = await TestClient.join(url, { uid: 'alice', channel: 'packed' })
  const bob = await TestClient.join(url, { uid: 'bob', channel: 'packed' })
  assert.equal((await bob.next()).text, '{"uid":"alice","channel":"packed"}')
  alice.send('hello from the tarball')
  assert.equal((await bob.next()).text, 'hello from the tarball')
  alice.close()
  bob.close()
  server.child.kill()
})

/**
 * A module preloaded with `--import`: records every package the process loads, as ES
 * module (a resolve hook, which runs on the loader thread) or through require, and
 * writes their names to `LOADED_FILE` at exit.
 */
const LOAD_TRACE = `
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire, register } from 'node:module'
const file = process.env.LOADED_FILE
writeFileSync(file + '.esm', '')
register('data:text/javascript,' + encodeURIComponent(\`
import { appendFileSync } from 'node:fs'
let file
export function initialize (data) { file = data.file }
export async function resolve (specifier, context, next) {
  const resolved = await next(specifier, context)
  appendFileSync(file, resolved.url + '\\\\n')
  return resolved
}\`), { data: { file: file + '.esm' } })
// A signal ends a process without 'exit'; the plain app has no handler of its own.
process.once('SIGTERM', () => { if (process.listenerCount('SIGTERM') === 0) process.exit(0) })
process.on('exit', () => {
  const urls = [...readFileSync(file + '.esm', 'utf8').split('\\n'), ...Object.keys(createRequire(import.meta.url).cache)]
  const names = new Set()
  for (const url of urls) {
    const match = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\/(?!.*node_modules)/.exec(url)
    if (match !== null) names.add(match[1])
  }
  writeFileSync(file, [...names].sort().join('\\n'))
})
`

/** The packages a process of the app folder loaded, traced by LOAD_TRACE. */
async function loadedPackages (args: string[], stop: (process: RunningCli) => Promise<void>): Promise<Set<string>> {
  writeFileSync(join(app, 'load-trace.mjs'), LOAD_TRACE)
  const file = join(work, `loaded-${Math.random().toString(36).slice(2)}`)
  const traced = runCommand(process.execPath, ['--import', './load-trace.mjs', ...args], { cwd: app, stdin: 'ignore', env: { LOADED_FILE: file, MLES_LOG_LEVEL: 'warn' } })
  await stop(traced)
  await traced.exited
  assert.ok(existsSync(file), `no trace written: ${traced.stderr()}`)
  return new Set(readFileSync(file, 'utf8').split('\n').filter((name) => name !== ''))
}

/** Packages of features a plain start must not load. */
const FEATURE_PACKAGES = ['acme-client', 'cbor', 'ioredis', 'lmdb', 'prom-client', 'mqtt']
const COMMAND_PACKAGES = ['@fastify/static', '@fastify/compress', '@fastify/accept-negotiator', 'commander', 'lru-cache', 'p-limit']

test('the plugin alone loads none of the optional features, nor the command\'s packages; each feature loads its own when configured', async () => {
  writeFileSync(join(app, 'plugin-app.mjs'), PLUGIN_APP)
  const untilListening = async (traced: RunningCli): Promise<void> => {
    await traced.waitFor(/listening (\d+)/, 20_000)
    traced.child.kill('SIGTERM')
  }
  const plain = await loadedPackages(['plugin-app.mjs'], untilListening)
  assert.ok(plain.has('fastify-mles') && plain.has('@fastify/websocket') && plain.has('ws'), [...plain].join(' '))
  for (const name of [...FEATURE_PACKAGES, ...COMMAND_PACKAGES]) assert.ok(!plain.has(name), `the plugin alone loaded ${name}`)
  // The trace sees a lazily loaded package, or this test could not fail.
  const withV1 = await loadedPackages(['plugin-app.mjs', JSON.stringify({ v1: { port: 0, host: '127.0.0.1' } })], untilListening)
  assert.ok(withV1.has('cbor'), 'option v1 did not load cbor')

  const www = join(app, 'node_modules', manifest.name, 'example-app', 'www')
  const mles = join(app, 'node_modules', manifest.name, 'dist', 'example-app', 'cli.js')
  const serving = async (traced: RunningCli): Promise<void> => {
    await traced.waitFor(/serving http/, 20_000)
    traced.child.kill('SIGTERM')
  }
  const command = await loadedPackages([mles, '--no-tls', '--host', '127.0.0.1', '--port', '0', '--domains', 'localhost', '--wwwroot', www], serving)
  assert.ok(command.has('@fastify/static') && command.has('commander'), [...command].join(' '))
  for (const name of FEATURE_PACKAGES) assert.ok(!command.has(name), `mles --no-tls loaded ${name}`)
})

test('npx mles --no-tls serves the demo page, the browser bundle and the Mles endpoint', async () => {
  const www = join(app, 'node_modules', manifest.name, 'example-app', 'www')
  // As a user types it. npx dies of SIGTERM instead of passing it on, so the whole group is
  // signalled at the end; the graceful exit is checked on the linked command below.
  const mles = runCommand('npx', ['--no', '--', 'mles', '--no-tls', '--host', '127.0.0.1', '--port', '0', '--domains', 'localhost', '--wwwroot', www], { cwd: app, stdin: 'ignore', env: { MLES_LOG_LEVEL: 'warn' } })
  const [, port] = await mles.waitFor(/serving http:\/\/localhost:(\d+)\//, 20_000)
  const page = await get(Number(port), '/', { host: 'localhost' })
  assert.equal(page.status, 200)
  assert.match(page.body.toString(), /<html/i)
  assert.equal((await get(Number(port), '/_mles/client.js', { host: 'localhost' })).status, 200)
  const url = `ws://127.0.0.1:${port}/`
  const alice = await TestClient.join(url, { uid: 'alice', channel: 'cli' })
  const bob = await TestClient.join(url, { uid: 'bob', channel: 'cli' })
  assert.equal((await bob.next()).text, '{"uid":"alice","channel":"cli"}', 'alice join')
  alice.send('through npx mles')
  assert.equal((await bob.next()).text, 'through npx mles')

  // npx mles-client pipes a line through the same server.
  const client = runCommand('npx', ['--no', '--', 'mles-client', '-s', url, '-c', 'cli', '-u', 'piper'], { cwd: app })
  client.child.stdin?.end('piped line\n')
  assert.equal(await client.exited, 0, client.stderr())
  assert.equal((await bob.next()).text, 'piped line')
  alice.close()
  bob.close()
  process.kill(-(mles.child.pid as number), 'SIGTERM')
  await mles.exited
  assert.equal(mles.stderr(), '')
})

test('fastify-mles/client imports in Node and talks to the installed server', async () => {
  const server = await runModule('plugin-app.mjs', PLUGIN_APP)
  const [, port] = await server.waitFor(/listening (\d+)/, 20_000)
  const client = await runModule('client.mjs', `
import { MlesClient, MLES_PROTOCOL, computeAuth, joinFrame } from 'fastify-mles/client'
if (MLES_PROTOCOL !== 'mles-websocket' || typeof computeAuth('u', 'c', 'k') !== 'string' || !joinFrame({ uid: 'u', channel: 'c' }).includes('"uid"')) throw new Error('exports')
const url = 'ws://127.0.0.1:${port}/'
const a = new MlesClient(url, { uid: 'a', channel: 'node' })
const b = new MlesClient(url, { uid: 'b', channel: 'node' })
await Promise.all([a.ready, b.ready])
const got = new Promise((resolve) => b.on('message', (m) => resolve(m.data)))
a.send('client to client')
console.log('got ' + await got)
await Promise.all([a.close(), b.close()])
`)
  await client.waitFor(/got client to client/, 20_000)
  assert.equal(await client.exited, 0, client.stderr())
  server.child.kill()
})

test('a TypeScript consumer compiles against the installed types (strict, skipLibCheck off)', { timeout: NPM_TIMEOUT_MS }, async () => {
  const consumer = join(app, 'consumer')
  mkdirSync(consumer, { recursive: true })
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, noEmit: true, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] },
    files: ['app.ts', 'wrong.ts']
  }))
  writeFileSync(join(consumer, 'app.ts'), `
import Fastify from 'fastify'
import mles, { MlesOptionError, type MlesOptions, type MlesFrame } from 'fastify-mles'
import { MlesClient, type MlesMessage } from 'fastify-mles/client'
import { startServer, type ServerHandle } from 'fastify-mles/server'

const options: MlesOptions = { historyLimit: 50, redis: { url: 'redis://127.0.0.1:6379' } }
const app = Fastify()
await app.register(mles, options)
app.mles.publish('news', 'hello')
app.mles.publish('news', new Uint8Array([1, 2]), { binary: true })
const stop: () => void = app.mles.subscribe('news', (frame: MlesFrame) => { console.log(frame.uid, frame.data) })
stop()
const client = new MlesClient('ws://localhost/', { uid: 'u', channel: 'news' })
client.on('message', (message: MlesMessage) => { console.log(message.data) })
const server: ServerHandle = await startServer({ domains: ['localhost'], wwwroot: 'www', tls: 'none', port: 0 })
console.log(new MlesOptionError('path', 'x').option, server.url)
`)
  // The same consumer with one misuse must fail, or this check could not fail at all.
  writeFileSync(join(consumer, 'wrong.ts'), `
import Fastify from 'fastify'
import 'fastify-mles'
const app = Fastify()
// @ts-expect-error publish takes a string or bytes, not a number
app.mles.publish('news', 42)
`)
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  await run(process.execPath, [tsc, '-p', consumer], { cwd: consumer }).catch((error: { stdout: string }) => {
    assert.fail(`tsc failed against the installed types:\n${error.stdout}`)
  })
  writeFileSync(join(consumer, 'wrong.ts'), readFileSync(join(consumer, 'wrong.ts'), 'utf8').replace('// @ts-expect-error publish takes a string or bytes, not a number\n', ''))
  await assert.rejects(run(process.execPath, [tsc, '-p', consumer], { cwd: consumer }), (error: { stdout: string }) => /wrong\.ts.*TS2345/s.test(error.stdout))
})

test('an optional feature without its package: one error naming the package to install', async () => {
  writeFileSync(join(app, 'plugin-app.mjs'), PLUGIN_APP)
  const missing: Array<[object, string, string]> = [
    [{ redis: 'redis://127.0.0.1:9' }, 'redis', 'ioredis'],
    [{ historyDir: join(work, 'history') }, 'historyDir', 'lmdb']
  ]
  for (const [options, option, packageName] of missing) {
    const registered = runCommand(process.execPath, ['plugin-app.mjs', JSON.stringify(options)], { cwd: app, stdin: 'ignore' })
    assert.notEqual(await registered.exited, 0)
    const expected = `MlesMissingPackageError: fastify-mles: option "${option}" needs the package ${packageName}, which is not installed: npm install ${packageName}@${manifest.peerDependencies[packageName]}`
    assert.ok(registered.stderr().includes(expected), registered.stderr())
  }
  const www = join(app, 'node_modules', manifest.name, 'example-app', 'www')
  const base = ['--no-tls', '--host', '127.0.0.1', '--port', '0', '--domains', 'localhost', '--wwwroot', www]
  const flags: Array<[string[], string]> = [
    [['--redis', 'redis://127.0.0.1:9'], 'ioredis'],
    [['--history-dir', join(work, 'history')], 'lmdb'],
    [['--metrics-listen', '127.0.0.1:0'], 'prom-client'],
    [['--redis', 'redis://127.0.0.1:9', '--workers', '2'], 'ioredis']
  ]
  for (const [extra, packageName] of flags) {
    const mles = runCommand('npx', ['--no', '--', 'mles', ...base, ...extra], { cwd: app, stdin: 'ignore' })
    assert.equal(await mles.exited, 2, `${extra.join(' ')}: ${mles.stderr()}`)
    assert.equal(mles.stderr(), `mles: ${extra[0]} needs the package ${packageName}, which is not installed: npm install ${packageName}@${manifest.peerDependencies[packageName]}\n`)
    assert.equal(mles.stdout(), '')
  }
  const bridge = runCommand('npx', ['--no', '--', 'mles-client', '-s', 'ws://127.0.0.1:9/', '-c', 'c', '-u', 'u', '--mqtt-broker', 'mqtt://127.0.0.1:9'], { cwd: app, stdin: 'ignore' })
  assert.equal(await bridge.exited, 2)
  assert.equal(bridge.stderr(), `mles-client: --mqtt-broker needs the package mqtt, which is not installed: npm install mqtt@${manifest.peerDependencies.mqtt}\n`)
})

test('with the optional peers installed beside it, the features load from the user\'s node_modules', { timeout: NPM_TIMEOUT_MS }, async () => {
  let redis: RedisProcess | undefined
  try {
    await npm(['install', '--omit=dev', ...['ioredis', 'lmdb', 'prom-client'].map((name) => `${name}@${installedVersion(name)}`)], app)
    redis = await startRedis()
    const www = join(app, 'node_modules', manifest.name, 'example-app', 'www')
    const base = ['--no-tls', '--host', '127.0.0.1', '--port', '0', '--domains', 'localhost', '--wwwroot', www]
    for (const extra of [['--redis', redis.url, '--metrics-listen', '127.0.0.1:0'], ['--history-dir', join(work, 'history')]]) {
      // The command as npm links it (node_modules/.bin/mles): SIGTERM reaches it directly.
      const mles = runCommand(join(app, 'node_modules', '.bin', 'mles'), [...base, ...extra], { cwd: app, stdin: 'ignore', env: { MLES_LOG_LEVEL: 'warn' } })
      const [, port] = await mles.waitFor(/serving http:\/\/localhost:(\d+)\//, 20_000)
      const url = `ws://127.0.0.1:${port}/`
      const alice = await TestClient.join(url, { uid: 'alice', channel: 'peers' })
      alice.send('kept')
      await new Promise((resolve) => setTimeout(resolve, 200))
      const bob = await TestClient.join(url, { uid: 'bob', channel: 'peers' })
      assert.deepEqual([(await bob.next()).text, (await bob.next()).text], ['{"uid":"alice","channel":"peers"}', 'kept'])
      alice.close()
      bob.close()
      mles.child.kill('SIGTERM')
      assert.equal(await mles.exited, 0, mles.stderr())
    }
    assert.ok(readdirSync(join(work, 'history')).length > 0, 'no history written by lmdb')
  } finally {
    await redis?.cleanup()
  }
})
