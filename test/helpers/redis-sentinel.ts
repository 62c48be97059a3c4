import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './pebble.js'

/**
 * A master, its replica and one Sentinel watching them (quorum 1), all
 * Debian's redis-server on free loopback ports, nothing saved.
 */
export interface SentinelSet {
  /** The name the Sentinel monitors the master under. */
  masterName: string
  /** The Sentinel's URL (what `redis.sentinels` takes). */
  sentinelUrl: string
  masterPort: number
  replicaPort: number
  /** The port the Sentinel names as master now. */
  currentMasterPort: () => Promise<number>
  /** A client of the server on `port` (closed by `cleanup`). */
  client: (port: number) => Redis
  /**
   * `SENTINEL FAILOVER`: the replica becomes the master; resolves with its port
   * once the Sentinel names it, it takes writes, and the old master, still up,
   * has turned replica.
   */
  failover: () => Promise<number>
  cleanup: () => Promise<void>
}

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function startSentinelSet (masterName = 'mymaster'): Promise<SentinelSet> {
  const dir = mkdtempSync(join(tmpdir(), 'mles-sentinel-'))
  const children: ChildProcess[] = []
  const clients: Redis[] = []
  const server = (args: string[]): void => {
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    child.once('error', () => {})
    children.push(child)
  }
  const client = (port: number): Redis => {
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 50 })
    redis.on('error', () => {})
    clients.push(redis)
    return redis
  }
  const plain = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning']
  try {
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()]
    server(['--port', String(masterPort), '--dir', dir, '--dbfilename', 'master.rdb', ...plain])
    server(['--port', String(replicaPort), '--dir', dir, '--dbfilename', 'replica.rdb', '--replicaof', '127.0.0.1', String(masterPort), ...plain])
    const replica = client(replicaPort)
    await until('the replica in sync', async () => (await replica.info('replication')).includes('master_link_status:up'))
    const config = join(dir, 'sentinel.conf')
    writeFileSync(config, [
      `port ${sentinelPort}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 5000`
    ].join('\n') + '\n')
    server([config, '--sentinel'])
    const sentinel = client(sentinelPort)
    await until('the Sentinel to know the replica', async () => {
      const replicas = await sentinel.call('SENTINEL', 'REPLICAS', masterName) as unknown[][]
      return replicas.some((fields) => fields.includes(String(replicaPort)) && !String(fields[fields.indexOf('flags') + 1]).includes('disconnected'))
    })
    const currentMasterPort = async (): Promise<number> => Number(((await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as string[])[1])
    return {
      masterName,
      sentinelUrl: `redis://127.0.0.1:${sentinelPort}`,
      masterPort,
      replicaPort,
      currentMasterPort,
      client,
      failover: async () => {
        const before = await currentMasterPort()
        await sentinel.call('SENTINEL', 'FAILOVER', masterName)
        await until('the Sentinel to name the new master', async () => (await currentMasterPort()) !== before)
        const now = await currentMasterPort()
        const promoted = client(now)
        await until('the new master to take writes', async () => (await promoted.info('replication')).includes('role:master'))
        const demoted = client(before)
        await until('the old master to turn replica', async () => (await demoted.info('replication')).includes('role:slave'), 30_000)
        return now
      },
      cleanup: async () => {
        for (const each of clients) each.disconnect()
        await Promise.all(children.map(async (child) => {
          if (child.exitCode !== null) return
          const exited = new Promise((resolve) => child.once('exit', resolve))
          child.kill('SIGKILL')
          await exited
        }))
        rmSync(dir, { recursive: true, force: true })
      }
    }
  } catch (error) {
    for (const each of clients) each.disconnect()
    for (const child of children) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
