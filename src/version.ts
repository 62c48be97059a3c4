import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** This package's version, from the nearest package.json named fastify-mles (works from src and from dist). */
export function packageVersion (): string {
  let directory = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: string, version?: string }
      if (manifest.name === 'fastify-mles' && manifest.version !== undefined) return manifest.version
    } catch {}
    const parent = dirname(directory)
    if (parent === directory) return '0.0.0'
    directory = parent
  }
}
