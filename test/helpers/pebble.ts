// A throw-away ACME CA for tests: Let's Encrypt's Pebble (Debian package
// `pebble`) plus its mock DNS, pebble-challtestsrv, which answers 127.0.0.1 for
// every name so that a.localhost and b.localhost can be validated offline.
// Everything binds to 127.0.0.1 on free ports.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { get } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { issue, makeCa } from './certs.js'

export interface Pebble {
  /** The ACME directory URL. */
  directoryUrl: string
  /** CA (PEM file) of Pebble's own HTTPS listener: what an ACME client must trust. */
  caFile: string
  /** The root that issued certificates chain to; new on every Pebble start. */
  issuingRoot: () => Promise<string>
  stop: () => Promise<void>
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => { resolve(port) })
    })
  })
}

async function fetchText (url: string, ca: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    get(url, { ca }, (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => { response.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${response.statusCode ?? 0}`)) })
    }).on('error', reject)
  })
}

async function stopProcess (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/**
 * Starts Pebble validating http-01 challenges on 127.0.0.1:`httpPort` (where
 * the server under test must answer them). Fails with a clear message when the
 * Debian package is missing.
 */
export async function startPebble (options: { httpPort: number }): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'mles-pebble-'))
  const listenerCa = makeCa('pebble listener CA (test only)')
  const listener = issue(listenerCa, ['localhost', '127.0.0.1'], 'pebble')
  const [acmePort, managementPort, tlsPort, dnsPort, dnsManagementPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()])
  const config = join(dir, 'pebble.json')
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: listener.cert,
      privateKey: listener.key,
      httpPort: options.httpPort,
      tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: false
    }
  }))
  const started: ChildProcess[] = []
  const spawnChecked = (command: string, args: string[], env: Record<string, string> = {}): ChildProcess => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
    child.on('error', () => {})
    started.push(child)
    return child
  }
  const dns = spawnChecked('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${dnsManagementPort}`,
    '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''])
  const pebble = spawnChecked('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`],
    { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' })
  let pebbleLog = ''
  pebble.stderr?.on('data', (chunk: Buffer) => { pebbleLog += chunk.toString() })
  dns.stderr?.resume()

  const stop = async (): Promise<void> => { await Promise.all(started.map(stopProcess)) }
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`
  const deadline = Date.now() + 15_000
  for (;;) {
    const missing = started.find((child) => (child as ChildProcess & { spawnfile: string }).exitCode !== null)
    if (missing !== undefined || pebble.pid === undefined) {
      await stop()
      throw new Error('pebble did not start: install the Debian package "pebble" (apt-get install pebble)\n' + pebbleLog)
    }
    try {
      await fetchText(directoryUrl, listenerCa.pem)
      break
    } catch {
      if (Date.now() > deadline) {
        await stop()
        throw new Error(`pebble did not answer at ${directoryUrl} within 15 s\n${pebbleLog}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    directoryUrl,
    caFile: listenerCa.cert,
    issuingRoot: async () => await fetchText(`https://127.0.0.1:${managementPort}/roots/0`, listenerCa.pem),
    stop
  }
}
