import { spawn, type ChildProcess } from 'node:child_process'
import { after } from 'node:test'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../example-app/cli.ts', import.meta.url))
export const CLIENT_CLI = fileURLToPath(new URL('../../src/client/cli.ts', import.meta.url))

export interface RunningCli {
  child: ChildProcess
  /** Everything written to stdout so far. */
  stdout: () => string
  stderr: () => string
  /** Resolves with the first stdout match of `pattern`. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>
  exited: Promise<number | null>
}

/** Runs the `mles` command (from source) with `args`. */
export function runCli (args: string[], env: Record<string, string> = {}): RunningCli {
  return runScript(CLI, args, env, 'ignore')
}

/** Runs the `mles-client` command (from source); `stdin` 'pipe' lets the test write to it. */
export function runClientCli (args: string[], env: Record<string, string> = {}, stdin: 'pipe' | 'ignore' = 'pipe'): RunningCli {
  return runScript(CLIENT_CLI, args, env, stdin)
}

function runScript (script: string, args: string[], env: Record<string, string>, stdin: 'pipe' | 'ignore'): RunningCli {
  return runCommand(process.execPath, ['--import', 'tsx', script, ...args], { env, stdin })
}

/** Runs any command (e.g. an installed package's `mles` through npx) in `cwd`; killed with its children after the file's tests. */
export function runCommand (command: string, args: string[], options: { cwd?: string, env?: Record<string, string>, stdin?: 'pipe' | 'ignore' } = {}): RunningCli {
  const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: [options.stdin ?? 'pipe', 'pipe', 'pipe'], detached: true })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { resolve(code) }))
  after(() => {
    if (child.exitCode !== null || child.pid === undefined) return
    try { process.kill(-child.pid, 'SIGKILL') } catch {}
  })
  const waitFor = async (pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = pattern.exec(out)
      if (match !== null) return match
      if (child.exitCode !== null) throw new Error(`mles exited with ${child.exitCode} before printing ${pattern}: ${out}${err}`)
      if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms: ${out}${err}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  return { child, stdout: () => out, stderr: () => err, waitFor, exited }
}
