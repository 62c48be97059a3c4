// The cost of per-request access logs to a join storm (issue 17): W4 against
// the `mles` command at log level info, with its default (request lines at
// debug) and with --access-log (Fastify's request lines at info), its log
// going to a file as journald would take it. `npm run bench -- --access-log`.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { joinStorm } from './lib/join-storm.js'
import { mlesCommand } from './lib/peers.js'
import { sleep, stopChild } from './lib/proc.js'
import type { Job } from './generator.js'

export const ACCESS_LOG_VARIANTS = ['default', 'access-log'] as const
export type AccessLogVariant = typeof ACCESS_LOG_VARIANTS[number]

export interface AccessLogResult {
  variant: AccessLogVariant
  joins_per_s: number[]
  server_us_per_join: number[]
  log_lines_per_join: number[]
}

interface Setup {
  projectRoot: string
  joiners: number
  runs: number
  generators: number
  /** taskset prefix of the server; the generators get the other cores. */
  serverPin: string[]
  generatorCores: string[]
  generatorCommand: string[]
  /** No progress lines on stderr (the tests). */
  quiet?: boolean
}

async function startLogged (setup: Setup, variant: AccessLogVariant, logFile: string): Promise<{ child: ChildProcess, port: number }> {
  const cli = join(setup.projectRoot, 'dist', 'example-app', 'cli.js')
  const log = openSync(logFile, 'w')
  const command = mlesCommand(cli, ['--no-tls', '--port', '0', ...(variant === 'access-log' ? ['--access-log'] : [])], setup.serverPin)
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', log, 'inherit'], env: { ...process.env, MLES_LOG_LEVEL: 'info' } })
  closeSync(log)
  const deadline = Date.now() + 15_000
  for (;;) {
    const match = /serving https?:\/\/localhost:(\d+)\//.exec(readFileSync(logFile, 'utf8'))
    if (match !== null) return { child, port: Number(match[1]) }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`mles (${variant}) did not start: ${readFileSync(logFile, 'utf8').slice(-500)}`)
    await sleep(50)
  }
}

function lines (file: string): number {
  return statSync(file).size === 0 ? 0 : readFileSync(file, 'utf8').split('\n').length - 1
}

/** Alternates the variants `runs` times, so that the machine's drift falls on both alike. */
export async function runAccessLogBench (setup: Setup): Promise<AccessLogResult[]> {
  const results = ACCESS_LOG_VARIANTS.map((variant): AccessLogResult => ({ variant, joins_per_s: [], server_us_per_join: [], log_lines_per_join: [] }))
  const dir = mkdtempSync(join(tmpdir(), 'mles-bench-log-'))
  for (let run = 0; run < setup.runs; run++) {
    for (const result of results) {
      const logFile = join(dir, `${result.variant}-${run}.log`)
      const { child, port } = await startLogged(setup, result.variant, logFile)
      try {
        const before = lines(logFile)
        const job: Job = { workload: 'W4', system: 'fastify-mles', port, serverPid: child.pid as number, serverIsNode: false, warmupMs: 1000, durationMs: 3000, joiners: setup.joiners, history: 200 }
        const measured = await joinStorm(job, { parts: setup.generators, cores: setup.generatorCores, command: setup.generatorCommand })
        await sleep(200)
        result.joins_per_s.push(measured.joins_per_s)
        result.server_us_per_join.push(measured.server_us_per_join)
        result.log_lines_per_join.push((lines(logFile) - before) / setup.joiners)
        if (setup.quiet !== true) process.stderr.write(`bench: --access-log run ${run + 1}/${setup.runs} ${result.variant}: ${measured.joins_per_s.toFixed(0)} joins/s, ${measured.server_us_per_join.toFixed(0)} µs/join\n`)
      } finally {
        await stopChild(child)
      }
    }
  }
  return results
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** The results as a Markdown table, and saved as JSON next to it. */
export function accessLogTable (results: AccessLogResult[], meta: Record<string, string | number>, resultsDir: string): string {
  const base = results.find((result) => result.variant === 'default') as AccessLogResult
  const rows = results.map((result) => {
    const ratio = median(result.joins_per_s) / median(base.joins_per_s)
    return `| ${result.variant === 'default' ? '`mles` (request lines at debug)' : '`mles --access-log` (request lines at info)'} | ${median(result.joins_per_s).toFixed(0)} (${Math.min(...result.joins_per_s).toFixed(0)}–${Math.max(...result.joins_per_s).toFixed(0)}) | ${ratio.toFixed(2)}× | ${median(result.server_us_per_join).toFixed(0)} | ${median(result.log_lines_per_join).toFixed(2)} |`
  })
  const text = [
    `W4 join storm against the \`mles\` command, log level info, its log to a file; median of ${base.joins_per_s.length} runs (range), ${meta.joiners} joiners, ${meta.generators} generator processes. ${meta.cores} cores, ${meta.cpu}, Node ${meta.node}, ${meta.date}.`,
    '',
    '| server | joins/s | vs default | server µs/join | log lines per join |',
    '|---|---|---|---|---|',
    ...rows
  ].join('\n')
  writeFileSync(join(resultsDir, 'access-log.json'), JSON.stringify({ meta, results }, null, 2) + '\n')
  writeFileSync(join(resultsDir, 'access-log.md'), text + '\n')
  return text
}
