import type { FastifyBaseLogger } from 'fastify'
import { describeRedis, openRedis, type RedisConnection } from './cluster/redis-connection.js'
import type { ResolvedOptions } from './options.js'

/** The connection the per-IP limit counts in, so that the limit holds across the cluster (option `redis`). */
export async function connectPerIpRedis (options: NonNullable<ResolvedOptions['redis']>, log: FastifyBaseLogger): Promise<RedisConnection> {
  const redis = openRedis(options, {
    // While Redis is away a count fails at once instead of waiting, and the request passes.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), 2000),
    connectTimeout: options.connectTimeoutMs,
    commandTimeout: Math.max(1000, options.connectTimeoutMs),
    connectionName: 'mles-per-ip'
  })
  // The Redis engine logs outages; this connection only needs its errors handled.
  redis.on('error', (error: Error) => { log.debug({ err: error }, 'mles: per-IP limit: Redis connection error') })
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new Error(`fastify-mles: cannot reach ${options.cluster === undefined ? 'Redis at ' : ''}${describeRedis(options)} for the per-IP limit: ${(error as Error).message}`)
  }
  return redis
}
