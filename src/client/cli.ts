#!/usr/bin/env node
// The `mles-client` command: chat from a terminal, pipe frames in and out, link
// servers (--proxy-server) or bridge to MQTT (--mqtt-broker).
import { createInterface } from 'node:readline'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { MlesClient, frameText, type MlesClientOptions, type MlesMessage } from './mles-client.js'
import { MlesProxy } from './proxy.js'
import { MlesMqttBridge } from './mqtt-bridge.js'
import { MlesMissingPackageError, requirePackage } from '../optional.js'
import { packageVersion } from '../manifest.js'
import { parsePeerAddress } from '../options.js'

const wsUrl = (value: string): string => {
  if (!/^wss?:\/\/[^/]/.test(value)) throw new InvalidArgumentError('must be a ws:// or wss:// URL')
  return value
}
const collect = (value: string, previous: string[] = []): string[] => [...previous, wsUrl(value)]
const brokerUrl = (value: string): string => {
  if (!/^(mqtts?|wss?|tcp|tls):\/\/[^/]/.test(value)) throw new InvalidArgumentError('must be an mqtt://, mqtts://, ws:// or wss:// URL')
  return value
}

interface Flags { server?: string, channel?: string, uid?: string, proxyServer?: string[], mqttBroker?: string, raw: boolean, insecure: boolean, reconnect: boolean, v1?: string, wsProxy?: string | true }

const v1Server = (value: string): string => {
  if (parsePeerAddress(value) === null) throw new InvalidArgumentError('must be HOST or HOST:PORT (an IPv6 address in brackets)')
  return value
}
const proxyListen = (value: string): string => {
  const valid = /^\d{1,5}$/.test(value) ? Number(value) <= 65535 : parsePeerAddress(value, null, 0) !== null
  if (!valid) throw new InvalidArgumentError('must be PORT or HOST:PORT (PORT 0 to 65535)')
  return value
}

const command = new Command('mles-client')
  .description('Mles v2 client: join a channel, send stdin lines, print what arrives')
  .version(packageVersion(), '-V, --version')
  .addOption(new Option('-s, --server <url>', 'Mles server, e.g. wss://example.com/').argParser(wsUrl))
  .option('-c, --channel <channel>', 'channel to join')
  .option('-u, --uid <uid>', 'your user id')
  .option('--raw', 'print binary frames as raw bytes instead of hex', false)
  .option('--insecure', 'accept any TLS certificate (self-signed servers)', false)
  .option('--reconnect', 'reconnect when the connection drops (proxy and MQTT modes always do)', false)
  .addOption(new Option('--proxy-server <url>', 'proxy mode: link the channel on this server too (repeat; with -s or alone, two or more)').argParser(collect))
  .addOption(new Option('--mqtt-broker <url>', 'bridge the channel to the MQTT topic of the same name').argParser(brokerUrl))
  .addOption(new Option('--v1 <host[:port]>', 'speak the legacy v1 TCP protocol to this server (port 8077 by default) instead of v2').argParser(v1Server))
  .addOption(new Option('--ws-proxy [[host:]port]', 'with --v1: a WebSocket proxy for CBOR clients to the v1 server (0.0.0.0:8076 by default)').argParser(proxyListen))
  .addHelpText('after', '\nEnvironment: MLES_KEY, the server\'s shared key (adds auth to the join frame; with --v1, the shared-key mode);\nMLES_ADDR_KEY, with --v1 in address mode, a string hashed after the address.\n\nExamples:\n  mles-client -s ws://localhost:8080/ -c lobby -u alice\n  echo hello | mles-client -s ws://localhost:8080/ -c lobby -u bot\n  mles-client --proxy-server wss://a.example/ --proxy-server wss://b.example/ -c lobby -u proxy\n  mles-client --v1 localhost -c lobby -u alice\n  mles-client --v1 mles.example.org --ws-proxy 8076')
  .exitOverride()
  .configureOutput({ writeErr: () => {} })

function fail (message: string, code: number): never {
  process.stderr.write(`mles-client: ${message}\n`)
  process.exit(code)
}

let flags: Flags
try {
  command.parse(process.argv)
  flags = command.opts<Flags>()
} catch (error) {
  if (error instanceof CommanderError) {
    if (error.exitCode === 0) process.exit(0)
    fail(`${error.message.replace(/^error: /, '').split('\n')[0]} (see mles-client --help)`, 2)
  }
  throw error
}
if (flags.wsProxy !== undefined && flags.v1 === undefined) fail('--ws-proxy needs --v1 HOST[:PORT], the v1 server to proxy to', 2)
if (flags.v1 !== undefined) {
  const other = [flags.server === undefined ? '' : '-s/--server', flags.proxyServer === undefined ? '' : '--proxy-server', flags.mqttBroker === undefined ? '' : '--mqtt-broker', flags.reconnect ? '--reconnect' : '', flags.insecure ? '--insecure' : '', flags.raw ? '--raw' : ''].filter((name) => name !== '')
  if (other.length > 0) fail(`--v1 cannot be combined with ${other.join(', ')}`, 2)
  if (flags.wsProxy === undefined && (flags.channel === undefined || flags.uid === undefined)) fail('-c/--channel and -u/--uid are required (see mles-client --help)', 2)
  const { runV1 } = await import('./v1-cli.js')
  await runV1({ server: parsePeerAddress(flags.v1) as { host: string, port: number }, ...(flags.wsProxy === undefined ? {} : { wsProxy: flags.wsProxy }), uid: flags.uid, channel: flags.channel, fail })
} else {
  await runV2()
}

async function runV2 (): Promise<void> {
  if (flags.channel === undefined || flags.uid === undefined) fail('-c/--channel and -u/--uid are required (see mles-client --help)', 2)
  const proxyServers = flags.proxyServer ?? []
  if (proxyServers.length === 0 && flags.server === undefined) fail('-s/--server is required (see mles-client --help)', 2)
  if (proxyServers.length > 0 && flags.mqttBroker !== undefined) fail('--proxy-server and --mqtt-broker cannot be combined', 2)

  const key = process.env.MLES_KEY !== undefined && process.env.MLES_KEY !== '' ? process.env.MLES_KEY : undefined
  const common = {
    uid: flags.uid,
    channel: flags.channel,
    ...(key === undefined ? {} : { key }),
    ...(flags.insecure ? { wsOptions: { rejectUnauthorized: false } } : {})
  }
  const onSignals = (handler: () => void): void => { process.once('SIGINT', handler); process.once('SIGTERM', handler) }

  function statsLine (text: string): void {
    if (process.stderr.isTTY) process.stderr.write(`\r\u001b[2K${text}`)
  }

  if (proxyServers.length > 0) {
    const servers = flags.server === undefined ? proxyServers : [flags.server, ...proxyServers]
    if (servers.length < 2) fail('proxy mode links two or more servers: give --proxy-server twice, or -s and --proxy-server', 2)
    const proxy = new MlesProxy({ servers, ...common, reconnect: {} })
    proxy.on('link', ({ server, state }) => { process.stderr.write(`${process.stderr.isTTY ? '\r\u001b[2K' : ''}mles-client: ${servers[server]} ${state}\n`) })
    const timer = setInterval(() => {
      statsLine('forwarded ' + servers.map((_, from) => servers.map((__, to) => from === to ? '' : `${from}→${to} ${proxy.forwarded[from][to]}`).filter(Boolean).join('  ')).join('  '))
    }, 1000)
    onSignals(() => {
      clearInterval(timer)
      void proxy.close().then(() => process.exit(0))
    })
  } else if (flags.mqttBroker !== undefined) {
    try {
      await requirePackage('mqtt', '--mqtt-broker', '')
    } catch (error) {
      fail((error as Error).message, error instanceof MlesMissingPackageError ? 2 : 1)
    }
    const bridge = new MlesMqttBridge({ server: flags.server as string, broker: flags.mqttBroker, ...common, reconnect: {} })
    bridge.on('error', (error) => { process.stderr.write(`${process.stderr.isTTY ? '\r\u001b[2K' : ''}mles-client: ${error.message}\n`) })
    bridge.ready.then(() => { process.stderr.write(`mles-client: bridging ${flags.server as string} channel ${flags.channel as string} <-> ${flags.mqttBroker as string}\n`) },
      (error: Error) => { fail(`cannot start the bridge: ${error.message}`, 1) })
    const timer = setInterval(() => { statsLine(`forwarded mles→mqtt ${bridge.forwarded.toMqtt}  mqtt→mles ${bridge.forwarded.toMles}`) }, 1000)
    onSignals(() => {
      clearInterval(timer)
      void bridge.close().then(() => process.exit(0))
    })
  } else {
    runClient(flags.server as string, common, onSignals)
  }
}

function runClient (url: string, common: Pick<MlesClientOptions, 'uid' | 'channel' | 'key' | 'wsOptions'>, onSignals: (handler: () => void) => void): void {
  const client = new MlesClient(url, { ...common, reconnect: flags.reconnect ? {} : false })
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true
  let lastError = ''
  let opened = false
  client.on('error', (error) => { lastError = error.message })
  client.on('open', () => { opened = true })
  // Fired only when the server or the network ends the connection, never for our own close.
  client.on('close', ({ code, reason, willReconnect }) => {
    if (willReconnect) {
      process.stderr.write(`mles-client: connection lost (${code}${reason === '' ? '' : ` ${reason}`}); reconnecting\n`)
      return
    }
    if (!opened) fail(`cannot connect to ${url}${lastError === '' ? ` (${code})` : `: ${lastError}`}`, 1)
    fail(`the server closed the connection: ${code}${reason === '' ? '' : ` ${reason}`}`, 1)
  })

  const show = (message: MlesMessage): string => {
    if (message.binary && flags.raw) return ''
    const text = message.binary ? Buffer.from(message.data as Uint8Array).toString('hex') : frameText(message)
    if (!interactive) return text
    if (message.kind === 'join') return `* ${message.uid ?? '?'} joined`
    if (message.binary) return `[${(message.data as Uint8Array).length} bytes] ${text}`
    return message.uid === undefined ? text : `${message.uid}: ${text}`
  }

  const input = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive })
  const print = (message: MlesMessage): void => {
    if (message.binary && flags.raw) {
      process.stdout.write(message.data as Uint8Array)
      return
    }
    if (interactive) {
      process.stdout.write(`\r\u001b[2K${show(message)}\n`)
      input.prompt(true)
    } else {
      process.stdout.write(`${show(message)}\n`)
    }
  }
  client.on('message', print)
  client.on('join', print)

  const leave = async (): Promise<void> => {
    try {
      await client.ready
    } catch {
      return // the close handler reports why
    }
    // Mles has no join acknowledgement: linger a moment so that a refusal of the join is still seen.
    await new Promise((resolve) => setTimeout(resolve, 300))
    await client.close()
    process.exit(0)
  }
  if (interactive) {
    input.setPrompt(`${flags.uid as string}@${flags.channel as string}> `)
    client.ready.then(() => { process.stdout.write(`joined ${flags.channel as string} on ${url} as ${flags.uid as string}; Ctrl-D to leave\n`); input.prompt() }, () => {})
  }
  input.on('line', (line) => {
    if (line !== '' || !interactive) client.send(line)
    if (interactive) input.prompt()
  })
  input.on('close', () => { void leave() })
  onSignals(() => { void leave() })
}
