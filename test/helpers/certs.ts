import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCa { dir: string, cert: string, key: string, pem: string }
export interface TestCertificate { cert: string, key: string, pem: string }

const openssl = (args: string[]): void => { execFileSync('openssl', args, { stdio: 'ignore' }) }

/** A throw-away CA made with the openssl CLI. */
export function makeCa (name = 'mles test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'mles-ca-'))
  const cert = join(dir, 'ca.pem')
  const key = join(dir, 'ca.key')
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert])
  return { dir, cert, key, pem: readFileSync(cert, 'utf8') }
}

let serial = 1

/** A server certificate for `names`, signed by `ca`. */
export function issue (ca: TestCa, names: string[], label = names[0]): TestCertificate {
  const base = join(ca.dir, `${label}-${serial++}`)
  const extensions = `${base}.ext`
  writeFileSync(extensions, `subjectAltName=${names.map((name) => (/^[\d.]+$/.test(name) ? 'IP:' : 'DNS:') + name).join(',')}\nextendedKeyUsage=serverAuth\n`)
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${names[0]}`, '-keyout', `${base}.key`, '-out', `${base}.csr`])
  openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-CAserial', `${base}.srl`, '-days', '2', '-extfile', extensions, '-out', `${base}.pem`])
  return { cert: `${base}.pem`, key: `${base}.key`, pem: readFileSync(`${base}.pem`, 'utf8') }
}
