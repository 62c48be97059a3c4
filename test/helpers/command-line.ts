import assert from 'node:assert/strict'
import { parseCommandLine, type ServerConfig } from '../../example-app/config.js'

/** The configuration `mles ARGV` would run with; fails the test if the command line is refused. */
export function config (argv: string[], env: Record<string, string> = {}): ServerConfig {
  const result = parseCommandLine(argv, env, '1.2.3')
  if (result.kind !== 'config') throw new Error(`expected a config, got exit ${result.code}: ${result.output}`)
  return result.config
}

/** The refusal of `mles ARGV`: checked to be one `mles: ` line with exit code 2, and returned. */
export function failure (argv: string[], env: Record<string, string> = {}): string {
  const result = parseCommandLine(argv, env, '1.2.3')
  assert.equal(result.kind, 'exit', `expected a refusal for ${argv.join(' ')}`)
  if (result.kind !== 'exit') throw new Error('unreachable')
  assert.equal(result.code, 2)
  assert.equal(result.output.split('\n').filter(Boolean).length, 1, `one line: ${result.output}`)
  assert.match(result.output, /^mles: /)
  return result.output
}
