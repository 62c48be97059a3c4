import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import mles, { DEFAULT_OPTIONS, MlesOptionError, type MlesOptions } from '../src/index.js'
import fc from 'fast-check'
import { normalizeOrigin, resolveOptions } from '../src/options.js'

test('defaults', () => {
  const resolved = resolveOptions({}, {})
  assert.deepEqual(resolved, { ...DEFAULT_OPTIONS, key: undefined, redis: undefined, v1: undefined, historyDir: undefined, authorize: undefined, allowedOrigins: null, api: undefined })
  assert.equal(resolved.historyLimit, 200)
  assert.equal(resolved.historyMaxBytes, 10 * 1024 * 1024)
  assert.equal(resolved.channelIdleMs, 30 * 24 * 3600 * 1000)
  assert.equal(resolved.maxMessageBytes, 1024 * 1024)
  assert.equal(resolved.messagesPerSecond, 100)
  assert.equal(resolved.pingIntervalMs, 24000)
  assert.equal(resolved.maxMissedPongs, 3)
  assert.equal(resolved.joinTimeoutMs, 30000)
  assert.equal(resolved.perIpLimit, 60)
  assert.equal(resolved.perIpWindowMs, 60000)
  assert.equal(resolved.historyTotalBytes, 256 * 1024 * 1024)
  assert.equal(resolved.perIpChannelLimit, 30)
  assert.equal(resolved.ipv6PrefixLength, 64)
  assert.equal(resolved.maxConnections, 65_536)
  assert.equal(resolved.maxChannels, 100_000)
})

test('the history budget follows a larger historyMaxBytes by default, and takes what it is given', () => {
  assert.equal(resolveOptions({ historyMaxBytes: 512 * 1024 * 1024 }, {}).historyTotalBytes, 512 * 1024 * 1024)
  assert.equal(resolveOptions({ historyMaxBytes: 512 * 1024 * 1024, historyTotalBytes: 1000 }, {}).historyTotalBytes, 1000)
  assert.equal(resolveOptions({ historyTotalBytes: 0 }, {}).historyTotalBytes, 0)
})

test('key comes from the option, else from MLES_KEY; empty MLES_KEY means none', () => {
  assert.equal(resolveOptions({}, { MLES_KEY: 'env' }).key, 'env')
  assert.equal(resolveOptions({ key: 'opt' }, { MLES_KEY: 'env' }).key, 'opt')
  assert.equal(resolveOptions({}, { MLES_KEY: '' }).key, undefined)
})

test('redis takes a URL or settings, with defaults', () => {
  assert.deepEqual(resolveOptions({ redis: 'redis://127.0.0.1:6380/2' }, {}).redis, { url: 'redis://127.0.0.1:6380/2', cluster: undefined, sentinels: undefined, masterName: undefined, keyPrefix: 'mles:', leaseTtlMs: 15000, connectTimeoutMs: 5000, outboxBytes: 64 * 1024 * 1024, catchUpFrames: 10000 })
  assert.deepEqual(resolveOptions({ redis: { url: 'rediss://h', keyPrefix: 'app:', leaseTtlMs: 900 } }, {}).redis, { url: 'rediss://h', cluster: undefined, sentinels: undefined, masterName: undefined, keyPrefix: 'app:', leaseTtlMs: 900, connectTimeoutMs: 5000, outboxBytes: 64 * 1024 * 1024, catchUpFrames: 10000 })
  assert.deepEqual(resolveOptions({ redis: { cluster: ['redis://a:7000', 'redis://b:7001'] } }, {}).redis, { url: undefined, cluster: ['redis://a:7000', 'redis://b:7001'], sentinels: undefined, masterName: undefined, keyPrefix: 'mles:', leaseTtlMs: 15000, connectTimeoutMs: 5000, outboxBytes: 64 * 1024 * 1024, catchUpFrames: 10000 })
  assert.deepEqual(resolveOptions({ redis: { sentinels: ['redis://s1:26379', 'redis://s2'], masterName: 'mymaster' } }, {}).redis, { url: undefined, cluster: undefined, sentinels: ['redis://s1:26379', 'redis://s2'], masterName: 'mymaster', keyPrefix: 'mles:', leaseTtlMs: 15000, connectTimeoutMs: 5000, outboxBytes: 64 * 1024 * 1024, catchUpFrames: 10000 })
})

test('byte bounds follow a larger maxMessageBytes by default', () => {
  const resolved = resolveOptions({ maxMessageBytes: 32 * 1024 * 1024 }, {})
  assert.equal(resolved.maxFrameBytes, 32 * 1024 * 1024)
  assert.equal(resolved.maxBufferedBytes, 32 * 1024 * 1024)
})

const bad: Array<[Record<string, unknown>, string, RegExp]> = [
  [{ historyTotalBytes: -1 }, 'historyTotalBytes', /integer from 0/],
  [{ maxConnections: 1.5 }, 'maxConnections', /integer from 0 to 1000000000/],
  [{ maxChannels: '10' }, 'maxChannels', /got "10"/],
  [{ perIpChannelLimit: -2 }, 'perIpChannelLimit', /from 0/],
  [{ ipv6PrefixLength: 0 }, 'ipv6PrefixLength', /from 1 to 128 \(got 0\)/],
  [{ ipv6PrefixLength: 129 }, 'ipv6PrefixLength', /from 1 to 128/],
  [{ historyLimit: -1 }, 'historyLimit', /from 0 to 1000000 \(got -1\)/],
  [{ historyLimit: 1.5 }, 'historyLimit', /integer/],
  [{ historyLimit: '200' }, 'historyLimit', /got "200"/],
  [{ historyMaxBytes: -5 }, 'historyMaxBytes', /from 0 to/],
  [{ channelIdleMs: 0 }, 'channelIdleMs', /from 1 to/],
  [{ maxMessageBytes: 0 }, 'maxMessageBytes', /from 1 to/],
  [{ maxMessageBytes: 2048, maxFrameBytes: 1024 }, 'maxFrameBytes', /at least maxMessageBytes \(2048\)/],
  [{ maxMessageBytes: 2048, maxBufferedBytes: 1024 }, 'maxBufferedBytes', /at least maxMessageBytes/],
  [{ messagesPerSecond: -1 }, 'messagesPerSecond', /from 0 to/],
  [{ messagesPerSecond: Number.NaN }, 'messagesPerSecond', /got NaN/],
  [{ pingIntervalMs: 2 ** 31 }, 'pingIntervalMs', /from 0 to 2147483647/],
  [{ maxMissedPongs: 0 }, 'maxMissedPongs', /from 1 to/],
  [{ joinTimeoutMs: 0 }, 'joinTimeoutMs', /from 1 to/],
  [{ perIpLimit: Infinity }, 'perIpLimit', /got Infinity/],
  [{ perIpWindowMs: null }, 'perIpWindowMs', /got null/],
  [{ path: 'ws' }, 'path', /starting with "\/"/],
  [{ path: '/a?b' }, 'path', /without query/],
  [{ key: '' }, 'key', /non-empty string/],
  [{ key: 42 }, 'key', /non-empty string \(got 42\)/],
  [{ redis: 'http://localhost:6379' }, 'redis.url', /redis:\/\/ or rediss:\/\/ URL \(got "http/],
  [{ redis: 6379 }, 'redis', /must be a redis:\/\/ URL, \{ url, \.\.\. \}, \{ cluster: \[urls\], \.\.\. \} or \{ sentinels: \[urls\], masterName/],
  [{ redis: { url: 'redis://x', cluster: ['redis://y'] } }, 'redis', /takes one of url \(one Redis\), cluster \(a Redis Cluster\) and sentinels \(Redis Sentinel\), not url and cluster/],
  [{ redis: { cluster: [] } }, 'redis.cluster', /non-empty array/],
  [{ redis: { cluster: 'redis://y' } }, 'redis.cluster', /non-empty array/],
  [{ redis: { cluster: ['redis://y', 'http://z'] } }, 'redis.cluster', /redis:\/\/ or rediss:\/\/ URLs \(got "http/],
  [{ redis: { cluster: ['redis://y', 'rediss://z'] } }, 'redis.cluster', /mixes redis:\/\/ and rediss:\/\//],
  [{ redis: { cluster: ['redis://y'], keyPrefix: 'a{b}:' } }, 'redis.keyPrefix', /must not contain braces with cluster/],
  [{ redis: { url: 'redis://x', leaseTtlMs: 10 } }, 'redis.leaseTtlMs', /from 30 to/],
  [{ redis: { url: 'redis://x', db: 2 } }, 'redis.db', /not a setting of the Redis engine/],
  [{ redis: { url: 'redis://x', keyPrefix: 7 } }, 'redis.keyPrefix', /must be a string/],
  [{ redis: { url: 'redis://x', outboxBytes: -1 } }, 'redis.outboxBytes', /from 0 to/],
  [{ redis: { url: 'redis://x', catchUpFrames: 1.5 } }, 'redis.catchUpFrames', /from 0 to 1000000/],
  [{ redis: { sentinels: ['redis://s'] } }, 'redis.masterName', /must name the master/],
  [{ redis: { sentinels: [], masterName: 'm' } }, 'redis.sentinels', /non-empty array/],
  [{ redis: { sentinels: ['redis://s'], masterName: 'm', url: 'redis://x' } }, 'redis', /not url and sentinels/],
  [{ redis: { url: 'redis://x', masterName: 'm' } }, 'redis.masterName', /goes with sentinels only/],
  [{ historyDir: '' }, 'historyDir', /non-empty directory path \(got ""\)/],
  [{ historyDir: 5 }, 'historyDir', /non-empty directory path \(got 5\)/],
  [{ historyFlushMs: 0 }, 'historyFlushMs', /from 1 to 2147483647 \(got 0\)/],
  [{ redis: 'redis://x', historyDir: '/tmp/x' }, 'historyDir', /cannot be combined with redis/],
  [{ authorize: 'yes' }, 'authorize', /must be a function \(request, \{ uid, channel \}\)/],
  [{ authorizeTimeoutMs: 0 }, 'authorizeTimeoutMs', /from 1 to 2147483647 \(got 0\)/],
  [{ allowedOrigins: 'https://a.example' }, 'allowedOrigins', /an array of origins or a function/],
  [{ allowedOrigins: ['https://a.example/app'] }, 'allowedOrigins', /must hold origins like/],
  [{ allowedOrigins: ['ftp://a.example'] }, 'allowedOrigins', /got "ftp:\/\/a.example"/],
  [{ requireOrigin: 1 }, 'requireOrigin', /true or false \(got 1\)/],
  [{ api: 'key' }, 'api', /must be \{ key, prefix\? \}/],
  [{ api: { key: 'short' } }, 'api.key', /at least 16 characters without spaces \(got 5 characters\)/],
  [{ api: { key: 'k'.repeat(16), prefix: 'api' } }, 'api.prefix', /starting with "\/"/],
  [{ api: { key: 'k'.repeat(16), prefix: '/api/' } }, 'api.prefix', /not ending with one/],
  [{ api: { key: 'k'.repeat(16), token: 'x' } }, 'api.token', /not a setting of the HTTP API/],
  [{ historyLimt: 5 }, 'historyLimt', /is not an option of fastify-mles; known options: path, key, historyLimit/]
]

test('each bad option throws an error naming it and its accepted range', () => {
  for (const [options, name, message] of bad) {
    assert.throws(() => resolveOptions(options as MlesOptions, {}), (error: unknown) => {
      assert.ok(error instanceof MlesOptionError)
      assert.equal(error.option, name)
      assert.equal(error.code, 'FST_MLES_INVALID_OPTION')
      assert.match(error.message, new RegExp(`^fastify-mles: option "${name}" `))
      assert.match(error.message, message)
      return true
    }, JSON.stringify(options))
  }
})

test('property: an origin matches itself in any case and with its default port spelled out; anything more than an origin is none', () => {
  const host = fc.stringMatching(/^[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z][a-z0-9]{0,7}){0,3}$/)
  fc.assert(fc.property(fc.constantFrom('http', 'https'), host, fc.option(fc.integer({ min: 1, max: 65535 })), fc.array(fc.boolean(), { maxLength: 40 }), (scheme, name, port, upper) => {
    const origin = `${scheme}://${name}${port === null ? '' : `:${port}`}`
    const normalized = normalizeOrigin(origin)
    assert.ok(normalized !== null, origin)
    const shouted = [...origin].map((c, i) => upper[i % Math.max(1, upper.length)] === true ? c.toUpperCase() : c).join('')
    assert.equal(normalizeOrigin(shouted), normalized)
    const defaultPort = scheme === 'http' ? 80 : 443
    if (port === null) assert.equal(normalizeOrigin(`${origin}:${defaultPort}`), normalized)
    for (const more of ['/x', '?q', '#f', '/ ', '/a/b']) assert.equal(normalizeOrigin(origin + more), null, origin + more)
    assert.equal(normalizeOrigin(`${scheme}://user@${name}`), null)
  }), { numRuns: 300, seed: 7 })
})

test('property: any value of the new options either resolves or throws MlesOptionError naming it', () => {
  const names = ['authorize', 'authorizeTimeoutMs', 'allowedOrigins', 'requireOrigin', 'api'] as const
  fc.assert(fc.property(fc.constantFrom(...names), fc.oneof(fc.anything(), fc.array(fc.string()), fc.record({ key: fc.string(), prefix: fc.string() }, { requiredKeys: [] })), (name, value) => {
    try {
      resolveOptions({ [name]: value } as MlesOptions, {})
    } catch (error) {
      assert.ok(error instanceof MlesOptionError, String(error))
      assert.ok(error.option === name || error.option.startsWith(`${name}.`), error.option)
    }
  }), { numRuns: 500, seed: 11 })
})

test('app.register rejects bad options at registration time', async () => {
  const app = Fastify()
  await assert.rejects(async () => { await app.register(mles, { historyLimit: -1 }).ready() }, /option "historyLimit" must be an integer from 0 to 1000000/)
  await app.close()
})
