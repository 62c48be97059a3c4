import type { RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RedisConnection } from './cluster/redis-connection.js'
import type { MlesEndpoint } from './endpoint.js'
import { addressKey } from './ip-limiter.js'

type RateLimitPlugin = typeof import('@fastify/rate-limit').default

/** @fastify/rate-limit's in-memory store is an LRU of 5000 by default; one entry is about 100 bytes. */
const ADDRESSES_TRACKED = 100_000

/** A request refused by the per-IP limit; answered 429 with its message. */
export class PerIpLimitError extends Error {
  readonly statusCode = 429
}

/**
 * The per-IP limit of the upgrade route and the HTTP API (options
 * `perIpLimit`, `perIpWindowMs`), through @fastify/rate-limit: registered
 * with `global: false` in each of their encapsulated contexts, so it limits
 * those routes alone and an app's own registration stays as it was. With
 * `redis`, the counts live in Redis and the limit holds across the cluster.
 */
export class PerIpLimit {
  private constructor (
    private readonly server: MlesEndpoint,
    private readonly plugin: RateLimitPlugin,
    private readonly redis: RedisConnection | null
  ) {}

  /** Null when the limit is off (`perIpLimit: 0`): then @fastify/rate-limit is not even loaded. */
  static async create (server: MlesEndpoint): Promise<PerIpLimit | null> {
    if (server.options.perIpLimit === 0) return null
    const { default: plugin } = await import('@fastify/rate-limit')
    const redisOptions = server.options.redis
    const redis = redisOptions === undefined ? null : await (await import('./per-ip-redis.js')).connectPerIpRedis(redisOptions, server.log)
    return new PerIpLimit(server, plugin, redis)
  }

  /** Registers @fastify/rate-limit in `scope`, which must be an encapsulated context of the routes to limit. */
  async register (scope: FastifyInstance): Promise<void> {
    const prefix = this.server.options.redis?.keyPrefix ?? ''
    await scope.register(this.plugin, {
      global: false,
      ...(this.redis === null ? {} : { redis: this.redis, nameSpace: `${prefix}per-ip:` }),
      addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': true },
      addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false }
    })
  }

  /**
   * The `config.rateLimit` of a limited route: at most `perIpLimit` `what`
   * per window from one address; `exempt` requests are not counted. Every
   * setting is pinned because an app's own @fastify/rate-limit, registered
   * above this context, sees this config too and then applies the same limit.
   */
  routeConfig (what: string, exempt?: (request: FastifyRequest) => boolean): RateLimitOptions {
    const { perIpLimit, perIpWindowMs } = this.server.options
    const message = `at most ${perIpLimit} ${what} per ${perIpWindowMs / 1000} s from one address`
    return {
      hook: 'onRequest',
      max: perIpLimit,
      timeWindow: perIpWindowMs,
      // Addresses tracked per route in memory (without redis); past it the least recent starts a new window.
      cache: ADDRESSES_TRACKED,
      keyGenerator: (request) => addressKey(request.ip, this.server.options.ipv6PrefixLength),
      allowList: exempt === undefined ? [] : (request) => exempt(request),
      ban: -1,
      continueExceeding: false,
      exponentialBackoff: false,
      // While Redis is away, requests pass: the cluster goes on serving locally.
      skipOnError: true,
      onExceeding: () => {},
      onExceeded: (request, key) => { this.refused(request, key, message) },
      errorResponseBuilder: () => new PerIpLimitError(message)
    }
  }

  async close (): Promise<void> {
    if (this.redis === null) return
    try {
      if (this.redis.status === 'ready') {
        await this.redis.quit()
        return
      }
    } catch {}
    this.redis.disconnect()
  }

  private refused (request: FastifyRequest, ip: string, message: string): void {
    this.server.counters.droppedByIp++
    request.log.debug({ ip }, `mles: per-IP limit reached (${message}); refusing with 429`)
    this.server.notices.write('warn', 'per-ip', { ip }, `mles: per-IP limit reached (${message}); refusing with 429`)
  }
}
