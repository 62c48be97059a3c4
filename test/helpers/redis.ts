import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { Redis } from 'ioredis'
import { freePort } from './pebble.js'

/** A real redis-server (Debian's `redis-server`) on a free loopback port, in a throwaway directory. */
export interface RedisProcess {
  port: number
  url: string
  /** Stops the server (SIGKILL-free: SIGTERM, then waits for exit). Data is not saved. */
  stop: () => Promise<void>
  /** Starts it again on the same port, empty. */
  restart: () => Promise<void>
  /** Freezes the process (SIGSTOP): connections stay open, nothing is answered. */
  pause: () => void
  /** Thaws it (SIGCONT). */
  resume: () => void
  /** Stops it and removes its directory. */
  cleanup: () => Promise<void>
}

async function acceptsConnections (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.write('PING\r\n')
      socket.once('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    })
    socket.once('error', () => { resolve(false) })
  })
}

/** Starts redis-server on 127.0.0.1 and a free port; resolves once it answers PING. */
export async function startRedis (): Promise<RedisProcess> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'mles-redis-'))
  let child: ChildProcess | null = null
  let output = ''

  const start = async (): Promise<void> => {
    output = ''
    const process = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    process.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    process.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child = process
    const spawned = new Promise<void>((resolve, reject) => {
      process.once('error', (error) => { reject(new Error(`redis-server did not start (is Debian's redis-server installed?): ${error.message}`)) })
      process.once('spawn', resolve)
    })
    await spawned
    const deadline = Date.now() + 10_000
    while (!(await acceptsConnections(port))) {
      if (process.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not come up: ${output}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  const stop = async (): Promise<void> => {
    const running = child
    child = null
    if (running === null || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGCONT')
    running.kill('SIGKILL')
    await exited
  }

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    restart: start,
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') },
    cleanup: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** One redis-server and a client to look into it, shared by the tests of a file: started before them, stopped after. */
export interface SharedRedis {
  readonly server: RedisProcess
  readonly url: string
  readonly inspector: Redis
}

export function redisForTests (): SharedRedis {
  let server: RedisProcess | null = null
  let inspector: Redis | null = null
  before(async () => {
    server = await startRedis()
    inspector = new Redis(server.url)
  })
  after(async () => {
    inspector?.disconnect()
    await server?.cleanup()
  })
  const started = <T>(value: T | null): T => {
    if (value === null) throw new Error('redisForTests: used outside a test')
    return value
  }
  return {
    get server () { return started(server) },
    get url () { return started(server).url },
    get inspector () { return started(inspector) }
  }
}
