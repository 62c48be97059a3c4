import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'
import { redactRedisUrl } from './cluster/redis-bus.js'
import type { ResolvedOptions } from './options.js'

/** The connection the per-IP limit counts in, so that the limit holds across the cluster (option `redis`). */
export async function connectPerIpRedis (options: NonNullable<ResolvedOptions['redis']>, log: FastifyBaseLogger): Promise<Redis> {
  const redis = new Redis(options.url, {
    lazyConnect: true,
    // While Redis is away a count fails at once instead of waiting, and the request passes.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), 2000),
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
    throw new Error(`fastify-mles: cannot reach Redis at ${redactRedisUrl(options.url)} for the per-IP limit: ${(error as Error).message}`)
  }
  return redis
}
