import { Agent } from 'node:https'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls'
import * as acme from 'acme-client'
import type { FastifyBaseLogger } from 'fastify'
import type { CertificateSource, CertificateStatus } from './certificates.js'
import type { AcmeTuning } from './config.js'

// Loaded only when ACME runs (the default TLS mode of `mles`), so --no-tls and
// --tls-cert never load acme-client.

interface Held {
  context: SecureContext
  pem: { key: string, cert: string }
  notAfter: Date
}

export interface AcmeOptions {
  domains: string[]
  directoryUrl: string
  email?: string
  /** Where the account key and certificates are kept; without it, in memory only. */
  cacheDir?: string
  /** Extra CA (PEM) to trust for the directory, on top of Node's roots. */
  caFile?: string
  tuning: AcmeTuning
}

const DAY_MS = 24 * 60 * 60 * 1000

/**
 * Certificates from an ACME CA (Let's Encrypt by default) with acme-client:
 * one per domain, served by SNI, answered over http-01, cached on disk and
 * reused across restarts without contacting the CA, renewed in the background
 * when fewer than `renewBeforeDays` remain. Failures are logged and retried
 * with backoff; nothing here ever throws into the server.
 */
export class AcmeCertificates implements CertificateSource {
  private readonly held = new Map<string, Held>()
  private readonly challenges = new Map<string, string>()
  private readonly issuing = new Set<string>()
  private readonly failures = new Map<string, number>()
  private readonly retryTimers = new Map<string, NodeJS.Timeout>()
  private checkTimer: NodeJS.Timeout | null = null
  private client: Promise<acme.Client> | null = null
  private stopped = false
  /** Called after a certificate is installed (first issuance or renewal). */
  onInstalled: (domain: string) => void = () => {}

  constructor (private readonly options: AcmeOptions, private readonly log: FastifyBaseLogger) {}

  contextFor (servername: string): SecureContext | undefined {
    return this.held.get(servername.toLowerCase())?.context
  }

  defaultCertificate (): { key: string, cert: string } | undefined {
    for (const domain of this.options.domains) {
      const held = this.held.get(domain)
      if (held !== undefined) return held.pem
    }
    return undefined
  }

  /** Every certificate held, as PEM (what the primary of `mles --workers` hands its workers). */
  pems (): Array<{ domain: string, key: string, cert: string }> {
    return [...this.held].map(([domain, held]) => ({ domain, ...held.pem }))
  }

  /** The key authorization for an http-01 token, while its challenge is pending. */
  challengeResponse (token: string): string | undefined {
    return this.challenges.get(token)
  }

  status (): CertificateStatus[] {
    return this.options.domains.map((domain) => ({
      domain,
      notAfter: this.held.get(domain)?.notAfter ?? null,
      issuing: this.issuing.has(domain),
      failures: this.failures.get(domain) ?? 0
    }))
  }

  /** Loads cached certificates, then issues or renews what is missing or expiring, in the background. */
  async start (): Promise<void> {
    for (const domain of this.options.domains) await this.loadCached(domain)
    this.check()
    this.checkTimer = setInterval(() => { this.check() }, this.options.tuning.checkIntervalMs)
    this.checkTimer.unref()
  }

  stop (): void {
    this.stopped = true
    if (this.checkTimer !== null) clearInterval(this.checkTimer)
    for (const timer of this.retryTimers.values()) clearTimeout(timer)
    this.retryTimers.clear()
  }

  /** Issues or renews every certificate that is missing or within `renewBeforeDays` of expiry. */
  check (): void {
    const renewBefore = this.options.tuning.renewBeforeDays * DAY_MS
    for (const domain of this.options.domains) {
      const held = this.held.get(domain)
      if (held === undefined) {
        this.log.warn({ domain }, 'mles: no certificate yet; HTTPS for this domain fails until one is issued')
        void this.issue(domain)
      } else if (held.notAfter.getTime() - Date.now() < renewBefore) {
        this.log.info({ domain, notAfter: held.notAfter.toISOString() }, 'mles: certificate due for renewal')
        void this.issue(domain)
      }
    }
  }

  private cachePaths (domain: string): { key: string, cert: string } | null {
    if (this.options.cacheDir === undefined) return null
    return { key: join(this.options.cacheDir, domain, 'key.pem'), cert: join(this.options.cacheDir, domain, 'cert.pem') }
  }

  private async loadCached (domain: string): Promise<void> {
    const paths = this.cachePaths(domain)
    if (paths === null) return
    try {
      const [key, cert] = await Promise.all([readFile(paths.key, 'utf8'), readFile(paths.cert, 'utf8')])
      this.install(domain, key, cert)
      this.log.info({ domain }, 'mles: certificate loaded from cache')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ domain, err: error }, 'mles: cached certificate unusable; issuing a new one')
    }
  }

  private install (domain: string, key: string, cert: string): void {
    const info = acme.crypto.readCertificateInfo(cert)
    this.held.set(domain, { context: createSecureContext({ key, cert }), pem: { key, cert }, notAfter: info.notAfter })
  }

  private async writeAtomically (path: string, content: string, mode: number): Promise<void> {
    const temporary = `${path}.${process.pid}.tmp`
    await writeFile(temporary, content, { mode })
    await rename(temporary, path)
  }

  /** The account's client, made once: domains issued at the same time share it (and one account key file). */
  private async accountClient (): Promise<acme.Client> {
    this.client ??= this.makeAccountClient()
    try {
      return await this.client
    } catch (error) {
      this.client = null
      throw error
    }
  }

  private async makeAccountClient (): Promise<acme.Client> {
    const { tuning, cacheDir } = this.options
    let accountKey: Buffer | undefined
    const keyPath = cacheDir === undefined ? undefined : join(cacheDir, 'account.key.pem')
    if (keyPath !== undefined) {
      try {
        accountKey = await readFile(keyPath)
      } catch {}
    }
    if (accountKey === undefined) {
      accountKey = await acme.crypto.createPrivateEcdsaKey()
      if (keyPath !== undefined && cacheDir !== undefined) {
        await mkdir(cacheDir, { recursive: true, mode: 0o700 })
        await this.writeAtomically(keyPath, accountKey.toString(), 0o600)
      }
    }
    return new acme.Client({
      directoryUrl: this.options.directoryUrl,
      accountKey,
      backoffMin: tuning.pollMinMs,
      backoffMax: tuning.pollMaxMs,
      backoffAttempts: 20
    })
  }

  private async issue (domain: string): Promise<void> {
    if (this.issuing.has(domain) || this.stopped) return
    this.issuing.add(domain)
    const started = Date.now()
    try {
      const client = await this.accountClient()
      const [key, csr] = await acme.crypto.createCsr({ commonName: domain, altNames: [domain] }, await acme.crypto.createPrivateEcdsaKey())
      const cert = await client.auto({
        csr,
        email: this.options.email,
        termsOfServiceAgreed: true,
        challengePriority: ['http-01'],
        // The CA checks the challenge itself; a self-check from inside would fail behind NAT or split DNS.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => { this.challenges.set(challenge.token, keyAuthorization) },
        challengeRemoveFn: async (_authz, challenge) => { this.challenges.delete(challenge.token) }
      })
      if (this.stopped) return
      const paths = this.cachePaths(domain)
      if (paths !== null && this.options.cacheDir !== undefined) {
        await mkdir(join(this.options.cacheDir, domain), { recursive: true, mode: 0o700 })
        await this.writeAtomically(paths.key, key.toString(), 0o600)
        await this.writeAtomically(paths.cert, cert, 0o644)
      }
      this.install(domain, key.toString(), cert)
      this.failures.delete(domain)
      this.log.info({ domain, notAfter: this.held.get(domain)?.notAfter.toISOString(), ms: Date.now() - started }, 'mles: certificate issued')
      this.onInstalled(domain)
    } catch (error) {
      if (this.stopped) return
      const failures = (this.failures.get(domain) ?? 0) + 1
      this.failures.set(domain, failures)
      const { retryMinMs, retryMaxMs } = this.options.tuning
      const delay = Math.min(retryMaxMs, retryMinMs * 2 ** (failures - 1)) * (0.75 + Math.random() * 0.5)
      this.log.error({ domain, err: error, failures, retryInMs: Math.round(delay) }, `mles: certificate issuance failed${this.held.has(domain) ? '' : ' (no certificate yet for this domain)'}`)
      const timer = setTimeout(() => { this.retryTimers.delete(domain); void this.issue(domain) }, delay)
      timer.unref()
      this.retryTimers.set(domain, timer)
    } finally {
      this.issuing.delete(domain)
    }
  }
}

/** Makes acme-client trust an extra CA for the directory (on top of Node's roots) and sets how often it retries a request. */
export async function configureAcmeTransport (caFile: string | undefined, requestRetries: number): Promise<void> {
  const defaults = acme.axios.defaults as typeof acme.axios.defaults & { acmeSettings?: { retryMaxAttempts: number, retryDefaultDelay: number } }
  if (caFile !== undefined) {
    const extra = await readFile(caFile, 'utf8')
    defaults.httpsAgent = new Agent({ ca: [...rootCertificates, extra], keepAlive: true })
  }
  if (defaults.acmeSettings !== undefined) {
    defaults.acmeSettings.retryMaxAttempts = requestRetries
    // acme-client waits 5 s and more between retries; with few retries (tests), wait 1 s.
    if (requestRetries < 5) defaults.acmeSettings.retryDefaultDelay = 1
  }
}
