import type { ResolvedOptions } from './options.js'
import { requirePackage } from './optional.js'

/**
 * The optional parts of an endpoint, as modules: each is imported only when
 * its option is set, so the plugin alone loads none of ioredis, lmdb or the
 * v1 codec.
 */
export interface OptionalParts {
  /** Option `redis`: the Redis engine. */
  cluster: typeof import('./cluster/redis-bus.js') | null
  /** Option `historyDir`: the durable history store. */
  durableHistory: typeof import('./history/lmdb-store.js') | null
  /** Option `v1`: the v1 TCP listener. */
  v1: typeof import('./v1/listener.js') | null
  /** Option `v1.peer`: the v1 peer links. */
  v1Peers: typeof import('./v1/peer.js') | null
}

/** Imports what `options` turns on; rejects with `MlesMissingPackageError` when an optional package it needs is not installed. */
export async function loadOptionalParts (options: ResolvedOptions): Promise<OptionalParts> {
  const parts: OptionalParts = { cluster: null, durableHistory: null, v1: null, v1Peers: null }
  if (options.redis !== undefined) {
    await requirePackage('ioredis', 'option "redis"')
    parts.cluster = await import('./cluster/redis-bus.js')
  }
  if (options.historyDir !== undefined) {
    await requirePackage('lmdb', 'option "historyDir"')
    parts.durableHistory = await import('./history/lmdb-store.js')
  }
  if (options.v1 !== undefined) parts.v1 = await import('./v1/listener.js')
  if (options.v1?.peer !== undefined) parts.v1Peers = await import('./v1/peer.js')
  return parts
}
