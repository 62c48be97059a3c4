import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The fields of this package's package.json that the code reads. */
export interface PackageManifest {
  version: string
  peerDependencies: Record<string, string>
}

let cached: PackageManifest | undefined

/** This package's package.json: the nearest one named fastify-mles (works from src and from dist). */
export function packageManifest (): PackageManifest {
  if (cached !== undefined) return cached
  let directory = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: string, version?: string, peerDependencies?: Record<string, string> }
      if (manifest.name === 'fastify-mles' && manifest.version !== undefined) {
        cached = { version: manifest.version, peerDependencies: manifest.peerDependencies ?? {} }
        return cached
      }
    } catch {}
    const parent = dirname(directory)
    if (parent === directory) return { version: '0.0.0', peerDependencies: {} }
    directory = parent
  }
}

export function packageVersion (): string {
  return packageManifest().version
}
