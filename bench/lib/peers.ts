import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sleep } from './proc.js'

/** Whether a peer server binary is on this machine. */
export function installed (binary: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0
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

async function waitForPort (port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { resolve(false) })
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** Mosquitto with one MQTT-over-WebSocket listener on loopback. */
export async function startMosquitto (pin: string[]): Promise<{ child: ChildProcess, port: number }> {
  const port = await freePort()
  const mqttPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'mles-bench-mosquitto-'))
  const config = join(dir, 'mosquitto.conf')
  // Mosquitto 2.0.11 refuses to start with only a websockets listener, hence the plain one;
  // its libwebsockets also ignores the bind address (the generator still connects to 127.0.0.1).
  writeFileSync(config, [
    `listener ${mqttPort} 127.0.0.1`,
    `listener ${port} 127.0.0.1`,
    'protocol websockets',
    'allow_anonymous true',
    'persistence false',
    'set_tcp_nodelay true',
    'log_dest none',
    ''
  ].join('\n'))
  const child = spawn(pin[0] ?? 'mosquitto', [...pin.slice(1), ...(pin.length > 0 ? ['mosquitto'] : []), '-c', config], { stdio: 'ignore' })
  await waitForPort(port, child)
  return { child, port }
}

/** A TLS certificate and key for `localhost`, as file paths. */
export interface BenchCertificate { cert: string, key: string }

/**
 * A self-signed certificate for W6, made once per bench run with openssl
 * (P-256, as an ACME certificate would be by default); null when openssl is
 * not installed.
 */
export function benchCertificate (): BenchCertificate | null {
  if (!installed('openssl')) return null
  const dir = mkdtempSync(join(tmpdir(), 'mles-bench-tls-'))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' })
  return made.status === 0 ? { cert, key } : null
}

/** nats-server with a WebSocket listener on loopback: plain text, or TLS with `tls` (W6). */
export async function startNats (pin: string[], tls: BenchCertificate | null = null): Promise<{ child: ChildProcess, port: number }> {
  const port = await freePort()
  const clientPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'mles-bench-nats-'))
  const config = join(dir, 'nats.conf')
  writeFileSync(config, [
    `listen: 127.0.0.1:${clientPort}`,
    'max_payload: 1048576',
    'websocket {',
    `  listen: "127.0.0.1:${port}"`,
    ...(tls === null ? ['  no_tls: true'] : ['  tls {', `    cert_file: "${tls.cert}"`, `    key_file: "${tls.key}"`, '  }']),
    '  compression: false',
    '}',
    ''
  ].join('\n'))
  const child = spawn(pin[0] ?? 'nats-server', [...pin.slice(1), ...(pin.length > 0 ? ['nats-server'] : []), '-c', config], { stdio: 'ignore' })
  await waitForPort(port, child)
  return { child, port }
}

/** redis-server on loopback, nothing saved: the engine of the cluster systems. */
export async function startRedisServer (): Promise<{ child: ChildProcess, port: number }> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
  await waitForPort(port, child)
  return { child, port }
}

/** Node flags for the servers the bench starts, from MLES_BENCH_SERVER_NODE_ARGS (say, '--cpu-prof --cpu-prof-dir=/tmp/prof'; workers inherit them). */
export function serverNodeArgs (): string[] {
  return (process.env.MLES_BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '')
}

/**
 * The command line of `mles` as the bench runs it: on loopback with its own
 * temporary web root, rate and per-IP limits off, `args` for the rest,
 * prefixed by `pin` (taskset).
 */
export function mlesCommand (cli: string, args: string[], pin: string[] = []): string[] {
  const wwwroot = mkdtempSync(join(tmpdir(), 'mles-bench-www-'))
  return [...pin, process.execPath, ...serverNodeArgs(), cli, '--host', '127.0.0.1', '-d', 'localhost', '-w', wwwroot,
    '--messages-per-second', '0', '--per-ip-limit', '0', '--per-ip-channel-limit', '0', '--metrics-interval', '0', ...args]
}

/**
 * The `mles` command on loopback as the bench runs it: its own temporary web
 * root, rate and per-IP limits off, `args` for the rest; prefixed by `pin`
 * (taskset) when given. Resolves with the port once it serves (`port` 0
 * takes a free one).
 */
export async function startMlesProcess (cli: string, args: string[], { pin = [], port = 0 }: { pin?: string[], port?: number } = {}): Promise<{ child: ChildProcess, port: number }> {
  const command = mlesCommand(cli, ['--port', String(port), ...args], pin)
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MLES_LOG_LEVEL: 'warn' } })
  const served = await new Promise<number>((resolve, reject) => {
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /serving https?:\/\/localhost:(\d+)\//.exec(output)
      if (match !== null) resolve(Number(match[1]))
    })
    child.once('exit', (code) => { reject(new Error(`mles exited with ${code} before serving`)) })
  })
  return { child, port: served }
}

/**
 * The `mles` command as an operator runs it in a cluster: `--redis`, and
 * `--workers N` processes sharing the port (N = 1 runs the server in the
 * process itself).
 */
export async function startMlesCommand (cli: string, redisPort: number, workers: number): Promise<{ child: ChildProcess, port: number }> {
  return await startMlesProcess(cli, ['--no-tls', '--redis', `redis://127.0.0.1:${redisPort}`, '--workers', String(workers)])
}

/**
 * The `mles` command alone, serving TLS with its own certificate
 * (`--tls-cert/--tls-key`), as W6 measures it; pinned like the other
 * single-process servers.
 */
export async function startMlesTls (cli: string, pin: string[], tls: BenchCertificate): Promise<{ child: ChildProcess, port: number }> {
  return await startMlesProcess(cli, ['--tls-cert', tls.cert, '--tls-key', tls.key], { pin })
}
