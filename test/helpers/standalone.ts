import { request } from 'node:http'
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { startServer, type ServerConfigInput, type ServerHandle } from '../../example-app/server.js'

/** A throw-away web root: `files` maps `domain/path` to content. */
export function makeWebRoot (files: Record<string, string | Buffer>): string {
  const root = mkdtempSync(join(tmpdir(), 'mles-www-'))
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path)
    mkdirSync(join(full, '..'), { recursive: true })
    writeFileSync(full, content)
  }
  return root
}

/** The standalone server on 127.0.0.1, a free port, plain HTTP, quiet. */
export async function startStandalone (config: Partial<ServerConfigInput> & Pick<ServerConfigInput, 'domains' | 'wwwroot'>): Promise<ServerHandle> {
  const handle = await startServer({ tls: 'none', host: '127.0.0.1', port: 0, logLevel: 'silent', metricsLogIntervalSec: 0, ...config })
  // Shut down even when a test fails before doing it itself.
  after(async () => { await handle.shutdown() })
  return handle
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** A GET with any Host header (fetch cannot set one). */
export async function get (port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: 'localhost', ...headers } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => { resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }) })
      response.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
