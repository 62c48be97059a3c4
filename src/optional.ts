import { packageManifest } from './manifest.js'

/**
 * The optional peer dependencies: npm does not install them with
 * fastify-mles; a feature that needs one loads it when configured.
 */
export type OptionalPackage = 'ioredis' | 'lmdb' | 'prom-client' | 'mqtt'

/** A feature was configured whose optional package is not installed. */
export class MlesMissingPackageError extends Error {
  readonly code = 'FST_MLES_MISSING_PACKAGE'
  /** What to run to install it, e.g. `npm install ioredis@^6.0.0`. */
  readonly install: string

  constructor (readonly packageName: OptionalPackage, readonly feature: string, prefix = 'fastify-mles: ') {
    const range = packageManifest().peerDependencies[packageName]
    const install = `npm install ${packageName}${range === undefined ? '' : `@${range}`}`
    super(`${prefix}${feature} needs the package ${packageName}, which is not installed: ${install}`)
    this.name = 'MlesMissingPackageError'
    this.install = install
  }
}

function isNotFound (error: unknown, packageName: string): boolean {
  const { code, message } = error as NodeJS.ErrnoException
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' && (message.includes(`'${packageName}'`) || message.includes(`"${packageName}"`))
}

/**
 * Loads an optional package, resolved from this package as the modules that
 * use it are; throws `MlesMissingPackageError` naming `feature` (`option
 * "redis"`, `--redis`) when it is not installed.
 */
export async function requirePackage (packageName: OptionalPackage, feature: string, prefix?: string): Promise<void> {
  try {
    await import(packageName)
  } catch (error) {
    if (isNotFound(error, packageName)) throw new MlesMissingPackageError(packageName, feature, prefix)
    throw new Error(`${prefix ?? 'fastify-mles: '}${feature} needs the package ${packageName}, which failed to load: ${(error as Error).message}`, { cause: error })
  }
}
