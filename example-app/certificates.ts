import { readFile } from 'node:fs/promises'
import { createSecureContext, type SecureContext } from 'node:tls'

/** What the TLS listener needs: a context per server name, and a default for clients without SNI. */
export interface CertificateSource {
  contextFor: (servername: string) => SecureContext | undefined
  /** PEM key and chain for the default context, when there is one. */
  defaultCertificate: () => { key: string, cert: string } | undefined
}

export interface CertificateStatus {
  domain: string
  /** Expiry of the certificate in use; null while there is none. */
  notAfter: Date | null
  issuing: boolean
  failures: number
}

/** A certificate chain and key read from files, reloaded on demand (SIGHUP). */
export class FileCertificates implements CertificateSource {
  private context: SecureContext | undefined
  private pem: { key: string, cert: string } | undefined

  constructor (private readonly certFile: string, private readonly keyFile: string) {}

  /** Reads both files; throws with a clear message when they are unreadable or do not match. */
  async load (): Promise<void> {
    const [cert, key] = await Promise.all([readFile(this.certFile, 'utf8'), readFile(this.keyFile, 'utf8')])
    let context: SecureContext
    try {
      context = createSecureContext({ key, cert })
    } catch (error) {
      throw new Error(`cannot use ${this.certFile} with ${this.keyFile}: ${(error as Error).message}`)
    }
    this.pem = { key, cert }
    this.context = context
  }

  contextFor (): SecureContext | undefined {
    return this.context
  }

  defaultCertificate (): { key: string, cert: string } | undefined {
    return this.pem
  }
}
