// `mles-client --v1 HOST[:PORT]`: the console client of Mles v1 (SPEC-v1 §9),
// and with --ws-proxy the WebSocket proxy that lets CBOR clients reach a v1
// server. Loaded only with --v1.
import { createInterface } from 'node:readline'
import { displayedMsg, V1Connection, type V1ServerAddress } from '../v1/client.js'
import type { V1KeyMode } from '../v1/key.js'
import { V1WebSocketProxy, V1_WS_PROXY_PORT } from '../v1/ws-proxy.js'
import { parsePeerAddress } from '../options.js'

export interface V1RunOptions {
  server: V1ServerAddress
  /** With --ws-proxy: where the proxy listens, `[HOST:]PORT` (true: the reference's 0.0.0.0:8076). */
  wsProxy?: string | true
  uid?: string
  channel?: string
  /** One error line and the exit code. */
  fail: (message: string, code: number) => never
}

/** `MLES_KEY` selects the shared-key mode; otherwise the address mode, with `MLES_ADDR_KEY` if set. */
function keyModeFromEnvironment (): V1KeyMode {
  const sharedKey = process.env.MLES_KEY
  const addressKey = process.env.MLES_ADDR_KEY
  return {
    ...(sharedKey === undefined || sharedKey === '' ? {} : { sharedKey }),
    ...(addressKey === undefined || addressKey === '' ? {} : { addressKey })
  }
}

function where (address: { host: string, port: number }): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`
}

/** `[HOST:]PORT` of --ws-proxy (checked by the flag's parser); a bare port listens on every IPv4 address, as the reference. */
function proxyAddress (value: string | true): { host: string, port: number } {
  if (value === true) return { host: '0.0.0.0', port: V1_WS_PROXY_PORT }
  if (/^\d+$/.test(value)) return { host: '0.0.0.0', port: Number(value) }
  return parsePeerAddress(value, null, 0) as { host: string, port: number }
}

export async function runV1 (options: V1RunOptions): Promise<void> {
  if (options.wsProxy !== undefined) await runProxy(options, proxyAddress(options.wsProxy))
  else await runConsole(options, options.uid as string, options.channel as string)
}

async function runProxy (options: V1RunOptions, listen: { host: string, port: number }): Promise<void> {
  let proxy: V1WebSocketProxy
  try {
    proxy = await V1WebSocketProxy.start({
      server: options.server,
      host: listen.host,
      port: listen.port,
      keyMode: keyModeFromEnvironment(),
      log: (line) => { process.stderr.write(`mles-client: ${line}\n`) }
    })
  } catch (error) {
    options.fail(`cannot listen on ${where(listen)} for the WebSocket proxy: ${(error as Error).message}`, 1)
  }
  const address = proxy.address
  process.stdout.write(`mles-client: WebSocket proxy on ws://${where({ host: address.address, port: address.port })}/ (subprotocol mles-websocket) to the v1 server ${where(options.server)}\n`)
  const stop = (): void => { void proxy.close().then(() => process.exit(0)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

/**
 * The console client: joins with an empty message, sends each stdin line
 * (its newline kept, as the reference sends what it reads) and prints every
 * other member's message as `uid:message`; joins (empty messages) and
 * ResyncMsgs are not shown.
 */
async function runConsole (options: V1RunOptions, uid: string, channel: string): Promise<void> {
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true
  const input = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive })
  let leaving = false
  let connection: V1Connection
  try {
    connection = await V1Connection.open(options.server, {
      onPayload: (payload) => {
        const msg = displayedMsg(payload)
        if (msg === null) return
        const text = Buffer.from(msg.message).toString('utf8')
        const line = `${msg.uid}:${text}${text.endsWith('\n') ? '' : '\n'}`
        if (interactive) {
          process.stdout.write(`\r\u001b[2K${line}`)
          input.prompt(true)
        } else {
          process.stdout.write(line)
        }
      },
      onClose: (event) => {
        if (leaving) return
        if (event.badFrame !== undefined) options.fail(`the v1 server sent a bad frame (${event.badFrame})`, 1)
        options.fail(`the v1 server closed the connection${event.error === undefined ? '' : `: ${event.error.message}`}`, 1)
      }
    })
  } catch (error) {
    options.fail(`cannot connect to ${where(options.server)}: ${(error as Error).message}`, 1)
  }
  connection.keyFor(uid, channel, keyModeFromEnvironment())
  connection.sendMsg({ uid, channel, message: new Uint8Array(0) })

  const leave = (): void => {
    if (leaving) return
    leaving = true
    // v1 has no acknowledgement: give the last lines a moment to leave before the connection ends.
    setTimeout(() => {
      connection.end()
      process.exit(0)
    }, 300)
  }
  if (interactive) {
    input.setPrompt(`${uid}@${channel}> `)
    process.stdout.write(`joined ${channel} on ${where(options.server)} (v1) as ${uid}; Ctrl-D to leave\n`)
    input.prompt()
  }
  input.on('line', (line) => {
    if (line !== '' || !interactive) connection.sendMsg({ uid, channel, message: Buffer.from(`${line}\n`) })
    if (interactive) input.prompt()
  })
  input.on('close', leave)
  process.once('SIGINT', leave)
  process.once('SIGTERM', leave)
}
