#!/usr/bin/env node
// The `mles` command: the reference server's command line (SPEC §8) on fastify-mles.
import { parseCommandLine } from './config.js'
import { startServer, type ServerHandle } from './server.js'
import { packageVersion } from './version.js'

const parsed = parseCommandLine(process.argv.slice(2), process.env, packageVersion())
if (parsed.kind === 'exit') {
  ;(parsed.code === 0 ? process.stdout : process.stderr).write(parsed.output)
  process.exit(parsed.code)
}
const { config } = parsed

let handle: ServerHandle
try {
  handle = await startServer(config)
} catch (error) {
  process.stderr.write(`mles: ${(error as Error).message}\n`)
  process.exit(1)
}

const endpoint = handle.url.replace(/^http/, 'ws')
process.stdout.write(`mles: serving ${handle.url} (Mles WebSocket: ${endpoint}, subprotocol mles-websocket)\n`)

let signals = 0
const stop = (signal: NodeJS.Signals): void => {
  if (++signals > 1) {
    process.stderr.write(`mles: second ${signal}; exiting now\n`)
    process.exit(1)
  }
  handle.shutdown().then(() => { process.exit(0) }, (error: Error) => {
    process.stderr.write(`mles: shutdown failed: ${error.message}\n`)
    process.exit(1)
  })
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.on('SIGUSR1', () => { handle.logMetrics() })
process.on('SIGHUP', () => {
  handle.reloadCertificates().catch((error: Error) => { handle.app.log.error({ err: error }, 'mles: certificate reload failed; keeping the old one') })
})
