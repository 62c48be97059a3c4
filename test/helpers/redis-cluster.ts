import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster } from 'ioredis'
import { freePort } from './pebble.js'

const run = promisify(execFile)

/** One master of a test cluster. */
export interface ClusterMaster {
  port: number
  /** Stops it (SIGTERM), keeping its node file so `start` brings back the same node with its slots. */
  stop: () => Promise<void>
  start: () => Promise<void>
}

/** A real Redis Cluster of `redis-server` masters on free loopback ports, built with `redis-cli --cluster create`. */
export interface RedisClusterProcess {
  masters: ClusterMaster[]
  /** `redis://127.0.0.1:PORT` of every master, the seed list a client is given. */
  urls: string[]
  /** Stops every master and removes their directories. */
  cleanup: () => Promise<void>
}

async function waitFor (check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`redis cluster: timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function cli (port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 })
  return stdout
}

/**
 * Starts `count` (at least 3) masters in cluster mode, without replicas or
 * persistence, joins them with `redis-cli --cluster create` and waits until
 * every node says the cluster is ok.
 */
export async function startRedisCluster (count = 3): Promise<RedisClusterProcess> {
  const root = mkdtempSync(join(tmpdir(), 'mles-redis-cluster-'))
  const masters: ClusterMaster[] = []
  const children = new Map<number, ChildProcess>()
  for (let i = 0; i < count; i++) {
    const port = await freePort()
    const dir = join(root, String(port))
    mkdirSync(dir)
    const start = async (): Promise<void> => {
      const child = spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--protected-mode', 'no',
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
        '--save', '', '--appendonly', 'no', '--loglevel', 'warning'
      ], { stdio: 'ignore' })
      children.set(port, child)
      await new Promise<void>((resolve, reject) => {
        child.once('error', (error) => { reject(new Error(`redis-server did not start (is Debian's redis-server installed?): ${error.message}`)) })
        child.once('spawn', resolve)
      })
      await waitFor(async () => (await cli(port, 'PING').catch(() => '')).trim() === 'PONG', `port ${port} to answer`)
    }
    const stop = async (): Promise<void> => {
      const child = children.get(port)
      if (child === undefined || child.exitCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
      child.kill('SIGTERM')
      await exited
    }
    await start()
    masters.push({ port, stop, start })
  }
  const cleanup = async (): Promise<void> => {
    await Promise.all(masters.map(async (master) => { await master.stop() }))
    rmSync(root, { recursive: true, force: true })
  }
  try {
    await run('redis-cli', ['--cluster', 'create', ...masters.map((master) => `127.0.0.1:${master.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 60_000 })
    for (const master of masters) {
      await waitFor(async () => /cluster_state:ok/.test(await cli(master.port, 'CLUSTER', 'INFO')), `the cluster to be ok on ${master.port}`)
    }
  } catch (error) {
    await cleanup()
    throw error
  }
  return { masters, urls: masters.map((master) => `redis://127.0.0.1:${master.port}`), cleanup }
}

/** An ioredis Cluster client on the test cluster. */
export function clusterClient (cluster: RedisClusterProcess): Cluster {
  return new Cluster(cluster.masters.map((master) => ({ host: '127.0.0.1', port: master.port })))
}
