// Type tests of `fastify-mles` (the plugin, its options and `app.mles`), run by
// tstyche (`npm run test:types`) against the built declarations in dist/:
// the package is imported by name, as a user would.
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyRequest } from 'fastify'
import { describe, expect, test } from 'tstyche'
import mles, {
  CloseCode,
  CloseReason,
  computeAuth,
  DEFAULT_OPTIONS,
  MLES_PROTOCOL,
  mles as namedMles,
  MlesOptionError,
  type MlesApi,
  type MlesAuthorization,
  type MlesAuthorize,
  type MlesJoinRequest,
  type MlesMemberEvent,
  type MlesChannelInfo,
  type MlesFrame,
  type MlesFrameListener,
  type MlesHistoryFrame,
  type MlesMetricsSnapshot,
  type MlesOptions,
  type MlesPublishOptions,
  type MlesRedisOptions,
  MlesMissingPackageError,
  type MlesV1Options,
  type OptionalPackage
} from 'fastify-mles'

// Never run: tstyche only type-checks.
const app = Fastify()

describe('app.register(mles, options)', () => {
  test('registers with every kind of option, or none', async () => {
    await app.register(mles)
    await app.register(mles, {})
    await app.register(mles, { historyLimit: 10, key: 'k', redis: 'redis://x', v1: { port: 8077 }, historyDir: '/tmp/x' })
    await app.register(mles, { redis: { url: 'rediss://x', keyPrefix: 'a:', leaseTtlMs: 1000, connectTimeoutMs: 100 } })
    await app.register(mles, { v1: { port: 0, host: '127.0.0.1', addressKey: 'a', peer: 'h:8077', peerRetryMinMs: 1, peerRetryMaxMs: 2 } })
    // Fastify's own register options sit beside ours.
    await app.register(mles, { path: '/ws', prefix: '/p', logLevel: 'warn' })
    await app.register(mles, () => ({ historyLimit: 1 }))
    await app.register(namedMles, { historyLimit: 0 })

    expect(app.register).type.toBeCallableWith(mles)
    expect(app.register).type.toBeCallableWith(mles, { historyLimit: 10, key: 'k', redis: 'redis://x', v1: { port: 8077 }, historyDir: '/tmp/x' })
    expect(app.register).type.toBeCallableWith(mles, {
      path: '/',
      key: 'k',
      historyLimit: 1,
      historyMaxBytes: 1,
      channelIdleMs: 1,
      maxMessageBytes: 1,
      maxFrameBytes: 1,
      messagesPerSecond: 1,
      pingIntervalMs: 1,
      maxMissedPongs: 1,
      joinTimeoutMs: 1,
      perIpLimit: 1,
      perIpWindowMs: 1,
      perIpChannelLimit: 1,
      ipv6PrefixLength: 64,
      maxConnections: 1,
      maxChannels: 1,
      historyTotalBytes: 1,
      maxBufferedBytes: 1,
      historyDir: '/d',
      historyFlushMs: 1
    })
    expect(namedMles).type.toBe(mles)
  })

  test('MlesOptions: every field optional, as declared', () => {
    expect<MlesOptions>().type.toBeAssignableFrom({})
    expect<MlesOptions['historyLimit']>().type.toBe<number | undefined>()
    expect<MlesOptions['key']>().type.toBe<string | undefined>()
    expect<MlesOptions['redis']>().type.toBe<string | MlesRedisOptions | undefined>()
    expect<MlesRedisOptions>().type.toBeAssignableFrom({ url: 'redis://x' })
    expect<MlesRedisOptions>().type.toBeAssignableFrom({ cluster: ['redis://a:7000', 'redis://b:7001'], keyPrefix: 'app:' })
    expect<MlesRedisOptions>().type.not.toBeAssignableFrom({ url: 'redis://x', cluster: ['redis://a:7000'] })
    expect<MlesRedisOptions>().type.not.toBeAssignableFrom({ keyPrefix: 'app:' })
    expect<MlesRedisOptions>().type.toBeAssignableFrom({ sentinels: ['redis://s:26379'], masterName: 'mymaster', catchUpFrames: 500 })
    expect<MlesRedisOptions>().type.not.toBeAssignableFrom({ sentinels: ['redis://s:26379'] })
    expect<MlesRedisOptions>().type.not.toBeAssignableFrom({ sentinels: ['redis://s:26379'], masterName: 'm', url: 'redis://x' })
    expect<NonNullable<MlesOptions['v1']>>().type.toBeAssignableFrom({ port: 8077 })
  })

  test('wrong option types are refused', () => {
    expect(app.register).type.not.toBeCallableWith(mles, { historyLimit: '5' })
    expect(app.register).type.not.toBeCallableWith(mles, { key: 5 })
    expect(app.register).type.not.toBeCallableWith(mles, { redis: 5 })
    expect(app.register).type.not.toBeCallableWith(mles, { redis: { keyPrefix: 'x' } })
    expect(app.register).type.not.toBeCallableWith(mles, { redis: { url: 'redis://x', keyprefix: 'x' } })
    expect(app.register).type.not.toBeCallableWith(mles, { v1: {} })
    expect(app.register).type.not.toBeCallableWith(mles, { v1: { port: '8077' } })
    expect(app.register).type.not.toBeCallableWith(mles, { v1: { port: 8077, hots: '::' } })
    expect(app.register).type.not.toBeCallableWith(mles, { historyLimt: 5 })
    expect(app.register).type.not.toBeCallableWith(mles, { historyLimit: 5, historyLimt: 5 })
    expect(app.register).type.not.toBeCallableWith(mles, { path: 1 })
    expect(app.register).type.not.toBeCallableWith(mles, { historyDir: true })
    expect(app.register).type.not.toBeCallableWith(mles, 'redis://x')

    expect<MlesOptions>().type.not.toBeAssignableFrom({ historyLimit: '5' })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ key: 5 })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ redis: 5 })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ redis: { keyPrefix: 'x' } })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ v1: {} })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ historyLimt: 5 })
    expect<MlesOptions>().type.not.toBeAssignableFrom({ path: 1 })
  })

  test('the plugin is a Fastify plugin of MlesOptions', () => {
    expect(mles).type.toBe<FastifyPluginAsync<MlesOptions>>()
    expect(mles).type.toBeCallableWith(app as FastifyInstance, {})
    expect(mles).type.not.toBeCallableWith(app as FastifyInstance, { historyLimit: '5' })
  })
})

describe('app.mles', () => {
  test('is MlesApi on every FastifyInstance, by declaration merging', () => {
    expect(app.mles).type.toBe<MlesApi>()
    expect<FastifyInstance['mles']>().type.toBe<MlesApi>()
    expect<MlesApi>().type.toHaveProperty('publish')
    expect<MlesApi>().type.not.toHaveProperty('send')
    expect(app.mles).type.not.toHaveProperty('send')
    expect(app.mles).type.not.toHaveProperty('hub')
  })

  test('publish(channel, data, options?)', () => {
    expect(app.mles.publish('c', 'text')).type.toBe<void>()
    expect(app.mles.publish('c', new Uint8Array([1]))).type.toBe<void>()
    expect(app.mles.publish('c', new Uint8Array([1]), { binary: true })).type.toBe<void>()
    expect(app.mles.publish('c', Buffer.from('x'), { binary: false })).type.toBe<void>()
    expect(app.mles.publish('c', 'text', {})).type.toBe<void>()
    expect<MlesPublishOptions>().type.toBe<{ binary?: boolean }>()

    expect(app.mles.publish).type.not.toBeCallableWith(5, 'x')
    expect(app.mles.publish).type.not.toBeCallableWith('c', 42)
    expect(app.mles.publish).type.not.toBeCallableWith('c')
    expect(app.mles.publish).type.not.toBeCallableWith()
    expect(app.mles.publish).type.not.toBeCallableWith('c', 'x', { binary: 'yes' })
    expect(app.mles.publish).type.not.toBeCallableWith('c', 'x', { binray: true })
    expect(app.mles.publish).type.not.toBeCallableWith('c', { text: 'x' })
    expect(app.mles.publish).type.not.toBeCallableWith('c', new ArrayBuffer(1))
  })

  test('subscribe(channel, listener) returns the unsubscribe function', () => {
    expect(app.mles.subscribe('c', () => {})).type.toBe<() => void>()
    app.mles.subscribe('c', (frame) => {
      expect(frame).type.toBe<MlesFrame>()
      expect(frame.channel).type.toBe<string>()
      expect(frame.uid).type.toBe<string | null>()
      expect(frame.data).type.toBe<Buffer>()
      expect(frame.isBinary).type.toBe<boolean>()
      expect(frame.join).type.toBe<boolean>()
    })
    expect<MlesFrameListener>().type.toBe<(frame: MlesFrame) => void | Promise<void>>()

    expect(app.mles.subscribe).type.not.toBeCallableWith('c')
    expect(app.mles.subscribe).type.not.toBeCallableWith('c', 'not a function')
    expect(app.mles.subscribe).type.not.toBeCallableWith(1, () => {})
    expect(app.mles.subscribe).type.not.toBeCallableWith('c', (frame: string) => frame)
  })

  test('history(channel) is MlesHistoryFrame[] with Buffer data', () => {
    expect(app.mles.history('c')).type.toBe<MlesHistoryFrame[]>()
    expect(app.mles.history('c')[0].data).type.toBe<Buffer>()
    expect(app.mles.history('c')[0].isBinary).type.toBe<boolean>()
    expect(app.mles.history('c')[0].data).type.not.toBeAssignableTo<string>()
    expect(app.mles.history).type.not.toBeCallableWith()
    expect(app.mles.history).type.not.toBeCallableWith(1)
  })

  test('channels(), metrics(), v1Address(), close()', () => {
    expect(app.mles.channels()).type.toBe<MlesChannelInfo[]>()
    expect(app.mles.channels()[0].historyBytes).type.toBe<number>()
    expect(app.mles.metrics().history_bytes).type.toBe<number>()
    expect<MlesChannelInfo>().type.toBe<{ name: string, members: number, historySize: number, historyBytes: number }>()

    const metrics = app.mles.metrics()
    expect(metrics).type.toBe<MlesMetricsSnapshot>()
    expect<MlesMetricsSnapshot[keyof MlesMetricsSnapshot]>().type.toBe<number>()
    expect(metrics.active_connections).type.toBe<number>()
    expect(metrics.total_messages_sent).type.toBe<number>()
    expect(metrics.total_messages_received).type.toBe<number>()
    expect(metrics.total_channels).type.toBe<number>()
    expect(metrics.dropped_slow_consumers).type.toBe<number>()
    expect(metrics.cluster_unsent_frames).type.toBe<number>()
    expect(metrics).type.not.toHaveProperty('activeConnections')

    expect(app.mles.v1Address()).type.toBe<AddressInfo | null>()
    expect(app.mles.close()).type.toBe<Promise<void>>()
    expect(app.mles.close).type.not.toBeCallableWith(1000)
  })
})

describe('authorize, origins, presence', () => {
  test('authorize gets the Fastify request and the join, and answers a boolean, { uid?, publish? } or a promise of one', async () => {
    await app.register(mles, {
      authorize: (request, join) => {
        expect(request).type.toBe<FastifyRequest>()
        expect(join).type.toBe<MlesJoinRequest>()
        expect(join.uid).type.toBe<string>()
        return join.channel === 'x'
      },
      authorizeTimeoutMs: 100,
      allowedOrigins: ['https://example.com'],
      requireOrigin: true
    })
    await app.register(mles, { authorize: async () => ({ uid: 'a', publish: false }) })
    await app.register(mles, { authorize: () => ({}), allowedOrigins: async (origin, request) => origin === request.hostname })
    expect<MlesAuthorization>().type.toBe<boolean | { readonly uid?: string, readonly publish?: boolean }>()
    expect<MlesAuthorize>().type.toBeAssignableFrom(async () => true)
    expect(app.register).type.not.toBeCallableWith(mles, { authorize: () => 'yes' })
    expect(app.register).type.not.toBeCallableWith(mles, { authorize: () => ({ publish: 'no' }) })
    expect(app.register).type.not.toBeCallableWith(mles, { allowedOrigins: 'https://example.com' })
    expect(app.register).type.not.toBeCallableWith(mles, { allowedOrigins: () => 'yes' })
    expect(app.register).type.not.toBeCallableWith(mles, { requireOrigin: 1 })
    expect(app.register).type.toBeCallableWith(mles, { api: { key: 'k'.repeat(16), prefix: '/api' } })
    expect(app.register).type.not.toBeCallableWith(mles, { api: { prefix: '/api' } })
  })

  test('on, off and members', async () => {
    const remove = app.mles.on('join', (event) => {
      expect(event).type.toBe<MlesMemberEvent>()
      expect(event.origin).type.toBe<string | null>()
    })
    expect(remove).type.toBe<() => void>()
    app.mles.on('leave', async () => {})
    expect(app.mles.on).type.not.toBeCallableWith('joined', () => {})
    expect(app.mles.off).type.toBeCallableWith('leave', (_event: MlesMemberEvent) => {})
    expect(await app.mles.members('c')).type.toBe<string[]>()
    expect(app.mles.members).type.not.toBeCallableWith(1)
  })
})

describe('the other exports of fastify-mles', () => {
  test('constants and helpers', () => {
    expect(MLES_PROTOCOL).type.toBe<'mles-websocket'>()
    expect(CloseCode.GOING_AWAY).type.toBe<1001>()
    expect<CloseCode>().type.toBe<1001 | 1003 | 1008 | 1009 | 1011 | 1013>()
    expect(CloseReason.AUTH_FAILED).type.toBe<'authentication failed'>()
    expect(computeAuth('u', 'c')).type.toBe<string>()
    expect(computeAuth('u', 'c', 'k')).type.toBe<string>()
    expect(computeAuth).type.not.toBeCallableWith('u')
    expect(computeAuth).type.not.toBeCallableWith('u', 'c', 5)
  })

  test('DEFAULT_OPTIONS is read-only', () => {
    expect(DEFAULT_OPTIONS.historyLimit).type.toBe<number>()
    expect(DEFAULT_OPTIONS.path).type.toBe<string>()
    expect(DEFAULT_OPTIONS).type.not.toHaveProperty('redis')
    // @ts-expect-error Cannot assign to 'historyLimit' because it is a read-only property.
    DEFAULT_OPTIONS.historyLimit = 5
  })

  test('MlesOptionError', () => {
    const error = new MlesOptionError('historyLimit', 'must be an integer')
    expect(error).type.toBeAssignableTo<Error>()
    expect(error.option).type.toBe<string>()
    expect(error.code).type.toBe<'FST_MLES_INVALID_OPTION'>()
    expect(MlesOptionError).type.not.toBeConstructableWith('historyLimit')
  })
})

describe('what the types keep safe', () => {
  // One MlesFrame object is handed to every subscriber of a channel, so its fields are read-only.
  test('MlesFrame is read-only', () => {
    expect<MlesFrame>().type.toBe<Readonly<MlesFrame>>()
  })

  // MlesApi's members are function properties, and the server binds them, so they work detached
  // (test/plugin/decorator.test.ts runs that).
  test('a detached app.mles method keeps its signature', () => {
    const { publish } = app.mles
    expect(publish).type.toBeCallableWith('c', 'x')
    expect(publish).type.not.toBeCallableWith('c', 42)
  })

  test('app.mles is read-only', () => {
    expect<Pick<FastifyInstance, 'mles'>>().type.toBe<{ readonly mles: MlesApi }>()
  })
})

describe('optional packages and the v1 options', () => {
  test('MlesMissingPackageError names an optional package', () => {
    const error = new MlesMissingPackageError('ioredis', 'option "redis"')
    expect(error).type.toBeAssignableTo<Error>()
    expect(error.packageName).type.toBe<OptionalPackage>()
    expect(error.install).type.toBe<string>()
    expect(error.code).type.toBe<'FST_MLES_MISSING_PACKAGE'>()
    expect<OptionalPackage>().type.toBe<'ioredis' | 'lmdb' | 'prom-client' | 'mqtt'>()
    expect(MlesMissingPackageError).type.not.toBeConstructableWith('redis', 'option "redis"')
  })

  test('MlesV1Options is the type of option v1', () => {
    expect<MlesOptions['v1']>().type.toBe<MlesV1Options | undefined>()
    expect<MlesV1Options>().type.not.toBeAssignableFrom({ host: '::' })
  })
})
