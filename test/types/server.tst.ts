// Type tests of `fastify-mles/server` (the standalone `mles` server), run by
// tstyche (`npm run test:types`) against the built declarations in dist/.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { MlesMetricsSnapshot } from 'fastify-mles'
import { describe, expect, test } from 'tstyche'
import {
  CLIENT_BUNDLE_PATH,
  completeConfig,
  startServer,
  type CertificateStatus,
  type ServerConfig,
  type ServerConfigInput,
  type ServerHandle,
  type ServerMetrics,
  type TlsMode
} from 'fastify-mles/server'

describe('startServer(config, options?)', () => {
  test('domains and wwwroot are enough; it returns Promise<ServerHandle>', async () => {
    expect(startServer({ domains: ['x'], wwwroot: 'w', tls: 'none', port: 0 })).type.toBe<Promise<ServerHandle>>()
    expect(startServer({ domains: ['x'], wwwroot: 'w' })).type.toBe<Promise<ServerHandle>>()
    expect(startServer).type.toBeCallableWith({ domains: ['x'], wwwroot: 'w' }, {})
    expect(startServer).type.toBeCallableWith({
      domains: ['a.example', 'b.example'],
      wwwroot: '/srv/www',
      tls: 'files',
      tlsCert: '/c.pem',
      tlsKey: '/k.pem',
      host: '::',
      port: 8443,
      httpPort: 8080,
      redirect: true,
      historyLimit: 100,
      historyDir: '/var/lib/mles',
      key: 'k',
      redis: 'redis://r',
      v1Port: 8077,
      v1Peer: 'peer:8077',
      workers: 2,
      metricsListen: { host: '127.0.0.1', port: 9464 },
      logLevel: 'warn'
    })
    const handle = await startServer({ domains: ['x'], wwwroot: 'w', tls: 'none', port: 0 })
    expect(handle.app).type.toBe<FastifyInstance>()
    expect(handle.address).type.toBe<AddressInfo>()
    expect(handle.httpAddress).type.toBe<AddressInfo | undefined>()
    expect(handle.v1Address).type.toBe<AddressInfo | undefined>()
    expect(handle.url).type.toBe<string>()
    expect(handle.metrics()).type.toBe<ServerMetrics>()
    expect(handle.metrics().static_cache_hits).type.toBe<number>()
    expect(handle.metrics()).type.toBeAssignableTo<MlesMetricsSnapshot>()
    expect(handle.certificates()).type.toBe<CertificateStatus[]>()
    expect(handle.reloadCertificates()).type.toBe<Promise<void>>()
    expect(handle.shutdown()).type.toBe<Promise<void>>()
    expect(handle.closed).type.toBe<Promise<void>>()
    // The plugin's decorator is there on the server's app too.
    expect(handle.app.mles.metrics()).type.toBe<MlesMetricsSnapshot>()
  })

  test('missing or wrong settings are refused', () => {
    expect(startServer).type.not.toBeCallableWith({ wwwroot: 'w' })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'] })
    expect(startServer).type.not.toBeCallableWith({})
    expect(startServer).type.not.toBeCallableWith()
    expect(startServer).type.not.toBeCallableWith({ domains: 'x', wwwroot: 'w' })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', tls: 'maybe' })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', tls: false })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', port: '443' })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', prot: 443 })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', metricsListen: '127.0.0.1:9464' })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w', redis: { url: 'redis://r' } })
    expect(startServer).type.not.toBeCallableWith({ domains: ['x'], wwwroot: 'w' }, { logger: true })

    expect<ServerConfigInput>().type.not.toBeAssignableFrom({ wwwroot: 'w' })
    expect<ServerConfigInput>().type.not.toBeAssignableFrom({ domains: ['x'], wwwroot: 'w', tls: 'maybe' })
  })
})

describe('the other server exports', () => {
  test('config types and helpers', () => {
    expect<TlsMode>().type.toBe<'acme' | 'files' | 'none'>()
    expect<ServerConfig['tls']>().type.toBe<TlsMode>()
    expect<ServerConfigInput['domains']>().type.toBe<string[]>()
    expect<ServerConfigInput['tls']>().type.toBe<TlsMode | undefined>()
    expect(completeConfig({ domains: ['X'], wwwroot: 'w' })).type.toBe<ServerConfig>()
    expect(completeConfig).type.not.toBeCallableWith({ domains: ['X'] })
    expect(CLIENT_BUNDLE_PATH).type.toBe<'/_mles/client.js'>()
  })

  // completeConfig merges `acme` over DEFAULT_ACME_TUNING, so a partial tuning compiles.
  test('acme tuning may be partial', () => {
    expect(startServer).type.toBeCallableWith({ domains: ['x'], wwwroot: 'w', acme: { renewBeforeDays: 10 } })
  })
})
