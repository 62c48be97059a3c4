import { createSecureContext, type SecureContext } from 'node:tls'
import type { CertificateSource } from './certificates.js'

/** A certificate as the primary of `mles --workers` hands it to its workers. */
export interface CertificatePem {
  domain: string
  key: string
  cert: string
}

/** The primary's message with every certificate it holds, sent at a worker's start and after each issuance or renewal. */
export interface CertificatesMessage {
  mles: 'certificates'
  certificates: CertificatePem[]
}

/** A worker's request for the certificates, once it listens for them. */
export interface CertificatesRequest {
  mles: 'certificates?'
}

export function isCertificatesMessage (message: unknown): message is CertificatesMessage {
  return typeof message === 'object' && message !== null && (message as { mles?: unknown }).mles === 'certificates' && Array.isArray((message as { certificates?: unknown }).certificates)
}

/**
 * A worker's certificates under `mles --workers N` with ACME: the primary
 * owns the account and the cache, orders and renews, and sends every
 * certificate here; each one received replaces the one in use at once.
 */
export class PrimaryCertificates implements CertificateSource {
  private readonly held = new Map<string, { context: SecureContext, pem: { key: string, cert: string } }>()
  /** Called after certificates arrive (the server swaps its default context). */
  onInstalled: () => void = () => {}

  constructor (private readonly domains: readonly string[]) {}

  install (certificates: readonly CertificatePem[]): void {
    for (const { domain, key, cert } of certificates) {
      this.held.set(domain, { context: createSecureContext({ key, cert }), pem: { key, cert } })
    }
    this.onInstalled()
  }

  contextFor (servername: string): SecureContext | undefined {
    return this.held.get(servername.toLowerCase())?.context
  }

  defaultCertificate (): { key: string, cert: string } | undefined {
    for (const domain of this.domains) {
      const held = this.held.get(domain)
      if (held !== undefined) return held.pem
    }
    return undefined
  }

  get count (): number {
    return this.held.size
  }
}
