import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import mles, { DEFAULT_OPTIONS, MlesOptionError, type MlesOptions } from '../src/index.js'
import { resolveOptions } from '../src/options.js'

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
})

test('key comes from the option, else from MLES_KEY; empty MLES_KEY means none', () => {
  assert.equal(resolveOptions({}, { MLES_KEY: 'env' }).key, 'env')
  assert.equal(resolveOptions({ key: 'opt' }, { MLES_KEY: 'env' }).key, 'opt')
  assert.equal(resolveOptions({}, { MLES_KEY: '' }).key, undefined)
})

test('redis takes a URL or settings, with defaults', () => {
  assert.deepEqual(resolveOptions({ redis: 'redis://127.0.0.1:6380/2' }, {}).redis, { url: 'redis://127.0.0.1:6380/2', keyPrefix: 'mles:', leaseTtlMs: 15000, connectTimeoutMs: 5000 })
  assert.deepEqual(resolveOptions({ redis: { url: 'rediss://h', keyPrefix: 'app:', leaseTtlMs: 900 } }, {}).redis, { url: 'rediss://h', keyPrefix: 'app:', leaseTtlMs: 900, connectTimeoutMs: 5000 })
})

test('byte bounds follow a larger maxMessageBytes by default', () => {
  const resolved = resolveOptions({ maxMessageBytes: 32 * 1024 * 1024 }, {})
  assert.equal(resolved.maxFrameBytes, 32 * 1024 * 1024)
  assert.equal(resolved.maxBufferedBytes, 32 * 1024 * 1024)
})

const bad: Array<[Record<string, unknown>, string, RegExp]> = [
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
  [{ redis: 6379 }, 'redis', /must be a redis:\/\/ URL or \{ url/],
  [{ redis: { url: 'redis://x', leaseTtlMs: 10 } }, 'redis.leaseTtlMs', /from 30 to/],
  [{ redis: { url: 'redis://x', db: 2 } }, 'redis.db', /not a setting of the Redis engine/],
  [{ redis: { url: 'redis://x', keyPrefix: 7 } }, 'redis.keyPrefix', /must be a string/],
  [{ historyDir: '' }, 'historyDir', /non-empty directory path \(got ""\)/],
  [{ historyDir: 5 }, 'historyDir', /non-empty directory path \(got 5\)/],
  [{ historyFlushMs: 0 }, 'historyFlushMs', /from 1 to 2147483647 \(got 0\)/],
  [{ redis: 'redis://x', historyDir: '/tmp/x' }, 'historyDir', /cannot be combined with redis/],
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

test('app.register rejects bad options at registration time', async () => {
  const app = Fastify()
  await assert.rejects(async () => { await app.register(mles, { historyLimit: -1 }).ready() }, /option "historyLimit" must be an integer from 0 to 1000000/)
  await app.close()
})
