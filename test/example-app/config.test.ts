import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, parseCommandLine } from '../../example-app/config.js'
import { config, failure } from '../helpers/command-line.js'

const www = mkdtempSync(join(tmpdir(), 'mles-www-'))
const file = join(www, 'file.pem')
writeFileSync(file, 'x')

test('the reference defaults (SPEC §8) and ours', () => {
  const c = config(['--domains', 'Example.COM', '--wwwroot', www])
  assert.deepEqual(c.domains, ['example.com'])
  assert.equal(c.wwwroot, www)
  assert.equal(c.historyLimit, 200)
  assert.equal(c.fileLimit, 256)
  assert.equal(c.port, 443)
  assert.equal(c.redirect, false)
  assert.equal(c.compressionCacheMb, 10)
  assert.equal(c.perIpLimit, 60)
  assert.equal(c.perIpWindowSec, 60)
  assert.equal(c.perIpChannelLimit, 30)
  assert.equal(c.ipv6PrefixLength, 64)
  assert.equal(c.maxConnections, 65_536)
  assert.equal(c.maxChannels, 100_000)
  assert.equal(c.historyTotalMb, 256)
  assert.equal(c.trustProxy, undefined)
  assert.equal(c.accessLog, false)
  assert.equal(c.email, undefined)
  assert.equal(c.cache, undefined)
  assert.equal(c.host, '::', 'every address, IPv6 and IPv4')
  assert.equal(c.httpPort, 80)
  assert.equal(c.tls, 'acme')
  assert.equal(c.acmeDirectory, LETS_ENCRYPT_PRODUCTION)
  assert.equal(c.logLevel, 'info')
  assert.equal(c.key, undefined)
})

test('every reference flag by its long and its short name', () => {
  const long = config(['--domains', 'a.test', '--domains', 'b.test', '--email', 'ops@a.test', '--cache', '/tmp/x', '--limit', '50',
    '--filelimit', '8', '--wwwroot', www, '--staging', '--port', '8443', '--redirect', '--compression-cache', '0',
    '--per-ip-limit', '5', '--per-ip-window', '30'])
  const short = config(['-d', 'a.test', '-d', 'b.test', '-e', 'ops@a.test', '-c', '/tmp/x', '-l', '50', '-f', '8', '-w', www, '-s',
    '-p', '8443', '-r', '-C', '0', '--per-ip-limit', '5', '--per-ip-window', '30'])
  assert.deepEqual(short, long)
  assert.deepEqual(long.domains, ['a.test', 'b.test'])
  assert.equal(long.email, 'ops@a.test')
  assert.equal(long.cache, '/tmp/x')
  assert.equal(long.historyLimit, 50)
  assert.equal(long.fileLimit, 8)
  assert.equal(long.acmeDirectory, LETS_ENCRYPT_STAGING)
  assert.equal(long.port, 8443)
  assert.equal(long.redirect, true)
  assert.equal(long.compressionCacheMb, 0)
  assert.equal(long.perIpLimit, 5)
  assert.equal(long.perIpWindowSec, 30)
})

test('our flags', () => {
  const own = config(['-d', 'a.test', '-w', www, '--host', '127.0.0.1', '--http-port', '8080', '--acme-directory', 'https://ca.test/dir',
    '--acme-ca-file', file, '--metrics-listen', '127.0.0.1:9464', '--metrics-interval', '0'])
  assert.equal(own.host, '127.0.0.1')
  assert.equal(own.httpPort, 8080)
  assert.equal(own.acmeDirectory, 'https://ca.test/dir')
  assert.equal(own.acmeCaFile, file)
  assert.deepEqual(own.metricsListen, { host: '127.0.0.1', port: 9464 })
  assert.equal(own.metricsLogIntervalSec, 0)
  assert.equal(config(['-d', 'a.test', '-w', www, '--no-tls']).tls, 'none')
  const files = config(['-d', 'a.test', '-w', www, '--tls-cert', file, '--tls-key', file])
  assert.equal(files.tls, 'files')
  assert.deepEqual(config(['-d', 'a.test', '-w', www, '--metrics-listen', '[::1]:9000']).metricsListen, { host: '::1', port: 9000 })
  assert.equal(config(['-d', 'a.test', '-w', www, '--redis', 'redis://r:6379']).redis, 'redis://r:6379')
  assert.deepEqual(config(['-d', 'a.test', '-w', www, '--redis-cluster', 'redis://a:7000, redis://b:7001']).redis, { cluster: ['redis://a:7000', 'redis://b:7001'] })
  assert.deepEqual(config(['-d', 'a.test', '-w', www, '--redis-sentinel', 'redis://s1:26379,redis://s2', '--redis-master', 'mymaster']).redis, { sentinels: ['redis://s1:26379', 'redis://s2'], masterName: 'mymaster' })
})

test('the limits of a public server, the trusted proxies, the access log', () => {
  const limits = config(['-d', 'a.test', '-w', www, '--per-ip-channel-limit', '5', '--ipv6-prefix', '56', '--max-connections', '1000', '--max-channels', '0',
    '--history-total', '64', '--trust-proxy', '10.0.0.0/8', '--trust-proxy', 'loopback', '--trust-proxy', '::1', '--access-log'])
  assert.equal(limits.perIpChannelLimit, 5)
  assert.equal(limits.ipv6PrefixLength, 56)
  assert.equal(limits.maxConnections, 1000)
  assert.equal(limits.maxChannels, 0)
  assert.equal(limits.historyTotalMb, 64)
  assert.deepEqual(limits.trustProxy, ['10.0.0.0/8', 'loopback', '::1'])
  assert.equal(limits.accessLog, true)
})

test('--workers auto: one worker per core the process may use', async () => {
  const { availableParallelism } = await import('node:os')
  assert.equal(config(['-d', 'a.test', '-w', www, '--no-tls', '--workers', 'auto', '--redis', 'redis://r:6379']).workers, availableParallelism())
  assert.equal(config(['-d', 'a.test', '-w', www, '--no-tls', '--workers', '3', '--redis', 'redis://r:6379']).workers, 3)
})

test('MLES_ACME_TUNING sets ACME timings; a bad one is one line', () => {
  assert.equal(config(['-d', 'a.test', '-w', www], { MLES_ACME_TUNING: '{"renewBeforeDays":60,"checkIntervalMs":1000}' }).acme.renewBeforeDays, 60)
  assert.equal(config(['-d', 'a.test', '-w', www]).acme.renewBeforeDays, 30)
  assert.match(failure(['-d', 'a.test', '-w', www], { MLES_ACME_TUNING: 'x' }), /MLES_ACME_TUNING must be a JSON object/)
  assert.match(failure(['-d', 'a.test', '-w', www], { MLES_ACME_TUNING: '{"renewSoon":1}' }), /MLES_ACME_TUNING: renewSoon is not a setting; known: renewBeforeDays/)
  assert.match(failure(['-d', 'a.test', '-w', www], { MLES_ACME_TUNING: '{"renewBeforeDays":0}' }), /renewBeforeDays must be a positive integer/)
})

test('MLES_KEY and MLES_LOG_LEVEL come from the environment', () => {
  const c = config(['-d', 'a.test', '-w', www], { MLES_KEY: 'sekrit', MLES_LOG_LEVEL: 'debug' })
  assert.equal(c.key, 'sekrit')
  assert.equal(c.logLevel, 'debug')
  assert.match(failure(['-d', 'a.test', '-w', www], { MLES_LOG_LEVEL: 'loud' }), /MLES_LOG_LEVEL must be one of/)
})

test('--help and --version exit 0 with their text', () => {
  const help = parseCommandLine(['--help'], {}, '1.2.3')
  assert.ok(help.kind === 'exit' && help.code === 0)
  for (const flag of ['--domains', '--email', '--cache', '--limit', '--filelimit', '--wwwroot', '--staging', '--port', '--redirect',
    '--compression-cache', '--per-ip-limit', '--per-ip-window', '--host', '--http-port', '--no-tls', '--tls-cert', '--tls-key',
    '--acme-directory', '--metrics-listen', 'MLES_KEY', 'MLES_LOG_LEVEL', 'SIGUSR1']) {
    assert.ok(help.output.includes(flag), flag)
  }
  const version = parseCommandLine(['--version'], {}, '1.2.3')
  assert.ok(version.kind === 'exit' && version.code === 0 && version.output.trim() === '1.2.3')
})

test('every bad flag or value: one line on stderr, exit code 2', () => {
  const base = ['-d', 'a.test', '-w', www]
  const cases: Array<[string[], RegExp]> = [
    [['--bogus', ...base], /unknown option '--bogus'/],
    [['-w', www], /--domains is required/],
    [['-d', 'a.test'], /--wwwroot is required/],
    [['-d', 'a.test', '-w', join(www, 'missing')], /--wwwroot: .* is not a directory/],
    [['-d', 'not a domain', '-w', www], /"not a domain" is not a domain name/],
    [[...base, '--port', 'https'], /--port .* must be an integer from 0 to 65535/],
    [[...base, '--port', '70000'], /must be an integer from 0 to 65535/],
    [[...base, '--limit', '-1'], /must be an integer/],
    [[...base, '--filelimit', '0'], /must be an integer from 1/],
    [[...base, '-C', 'lots'], /must be an integer/],
    [[...base, '--per-ip-window', '0'], /must be an integer from 1/],
    [[...base, '--ipv6-prefix', '0'], /--ipv6-prefix .* must be an integer from 1 to 128/],
    [[...base, '--ipv6-prefix', '129'], /must be an integer from 1 to 128/],
    [[...base, '--max-connections', 'many'], /--max-connections .* must be an integer from 0/],
    [[...base, '--history-total', '-1'], /--history-total .* must be an integer from 0/],
    [[...base, '--per-ip-channel-limit', '1.5'], /must be an integer from 0/],
    [[...base, '--trust-proxy', 'proxy.example'], /--trust-proxy .* must be an address \(10.0.0.1\), a CIDR \(10.0.0.0\/8\) or one of loopback, linklocal, uniquelocal/],
    [[...base, '--trust-proxy', '10.0.0.0/33'], /must be an address/],
    [[...base, '--tls-cert', file], /--tls-cert and --tls-key go together/],
    [[...base, '--tls-cert', join(www, 'nope'), '--tls-key', file], /--tls-cert: .* is not a readable file/],
    [[...base, '--no-tls', '--redirect'], /--redirect needs TLS/],
    [[...base, '--no-tls', '--email', 'x@y.z'], /--no-tls cannot be combined with --email/],
    [[...base, '--tls-cert', file, '--tls-key', file, '--staging'], /cannot be combined with ACME options/],
    [[...base, '--staging', '--acme-directory', 'https://ca.test/dir'], /--staging and --acme-directory cannot be combined/],
    [[...base, '--acme-directory', 'ftp://x'], /must be an http\(s\) URL/],
    [[...base, '--metrics-listen', '9464'], /must be HOST:PORT/],
    [[...base, '--port'], /argument missing/],
    [[...base, '--redis-cluster', 'redis://a:7000,http://b'], /--redis-cluster .* must list redis:\/\/ or rediss:\/\/ URLs, comma-separated \(got "http:\/\/b"\)/],
    [[...base, '--redis-cluster', ','], /must list redis:\/\/ or rediss:\/\/ URLs of cluster masters/],
    [[...base, '--redis-cluster', 'redis://a,rediss://b'], /mixes redis:\/\/ and rediss:\/\//],
    [[...base, '--redis', 'redis://a', '--redis-cluster', 'redis://b'], /--redis and --redis-cluster cannot be combined/],
    [[...base, '--redis-cluster', 'redis://b', '--history-dir', '/tmp/x'], /--history-dir cannot be combined with --redis-cluster/],
    [[...base, '--redis-sentinel', 'redis://s'], /--redis-sentinel needs --redis-master NAME/],
    [[...base, '--redis-master', 'mymaster'], /--redis-master goes with --redis-sentinel/],
    [[...base, '--redis-sentinel', 'redis://s', '--redis-master', 'm', '--redis', 'redis://a'], /--redis and --redis-sentinel cannot be combined/],
    [[...base, '--redis-sentinel', 'http://s', '--redis-master', 'm'], /must list redis:\/\/ or rediss:\/\/ URLs, comma-separated/],
    [[...base, '--redis-sentinel', 'redis://s', '--redis-master', 'm', '--v1-port', '0', '--v1-peer', 'x'], /--v1-peer cannot be combined with --redis-sentinel/]
  ]
  for (const [argv, message] of cases) assert.match(failure(argv), message, argv.join(' '))
})
