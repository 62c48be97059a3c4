// npm run bench -- --startup [--runs N] [--readme]
//
// What the plugin costs an app that registers nothing else: the package is
// packed and installed as users get it (production dependencies only) into a
// temporary folder, then two apps start there in turns, each a fresh process:
// Fastify + @fastify/websocket with one WebSocket route (the baseline), and
// Fastify + fastify-mles with defaults. Each reports the time from process
// start to listening (performance.now()) and its RSS after a full GC. The
// medians' differences are checked against the budget (issue 12: at most
// +3 MB RSS and +30 ms) and written to bench/results/startup.{json,md}, and
// with --readme into README.md between <!-- startup:start --> and
// <!-- startup:end -->.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'

export interface StartupOptions {
  projectRoot: string
  runs: number
  readme: boolean
  /** Where startup.json and startup.md go; default bench/results. */
  resultsDir?: string
}

const BUDGET = { rssMb: 3, startMs: 30 }

const REPORT = `
const rawRss = process.memoryUsage().rss
globalThis.gc()
const rss = process.memoryUsage().rss
process.stdout.write(JSON.stringify({ startMs: startedAt, rawRssMb: rawRss / 1048576, rssMb: rss / 1048576 }) + '\\n')
await app.close()
`

/** The two apps; `startedAt` is taken once listening, before the GC. */
const APPS = {
  'fastify + @fastify/websocket': `
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
const app = Fastify()
await app.register(websocket)
app.get('/', { websocket: true }, (socket) => { socket.on('message', (data) => { socket.send(data) }) })
await app.listen({ host: '127.0.0.1', port: 0 })
const startedAt = performance.now()
` + REPORT,
  'fastify + fastify-mles': `
import Fastify from 'fastify'
import mles from 'fastify-mles'
const app = Fastify()
await app.register(mles)
await app.listen({ host: '127.0.0.1', port: 0 })
const startedAt = performance.now()
` + REPORT
} as const
type AppName = keyof typeof APPS

interface Sample { startMs: number, rawRssMb: number, rssMb: number }

const signed = (value: number, digits: number): string => `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(digits)}`

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

function installedVersion (projectRoot: string, name: string): string {
  return (JSON.parse(readFileSync(join(projectRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
}

/** Packs the built package and installs it with production dependencies only, as `npm install fastify-mles fastify` would. */
function installPacked (projectRoot: string, folder: string): void {
  const npmFlags = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error']
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', folder, ...npmFlags], { cwd: projectRoot, encoding: 'utf8' })) as Array<{ filename: string }>
  writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'startup-bench', private: true, type: 'module' }) + '\n')
  const versions = ['fastify', '@fastify/websocket'].map((name) => `${name}@${installedVersion(projectRoot, name)}`)
  execFileSync('npm', ['install', '--omit=dev', join(folder, packed[0].filename), ...versions, ...npmFlags], { cwd: folder, stdio: ['ignore', 'ignore', 'inherit'] })
}

function measure (folder: string, app: AppName): Sample {
  const pinned = spawnSync('taskset', ['--version']).status === 0 && availableParallelism() >= 2
  const command = [process.execPath, '--expose-gc', `${app.replace(/\W+/g, '-')}.mjs`]
  const result = pinned
    ? spawnSync('taskset', ['-c', '0', ...command], { cwd: folder, encoding: 'utf8' })
    : spawnSync(command[0], command.slice(1), { cwd: folder, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`${app} failed (exit ${result.status}): ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as Sample
}

export function runStartup (options: StartupOptions): void {
  const folder = mkdtempSync(join(tmpdir(), 'mles-startup-'))
  try {
    process.stderr.write('bench: --startup: packing and installing the package (production dependencies only)\n')
    installPacked(options.projectRoot, folder)
    for (const [name, code] of Object.entries(APPS)) writeFileSync(join(folder, `${name.replace(/\W+/g, '-')}.mjs`), code)
    const names = Object.keys(APPS) as AppName[]
    const samples = new Map<AppName, Sample[]>(names.map((name) => [name, []]))
    // One warm-up round (disk cache), then the runs, alternating.
    for (const name of names) measure(folder, name)
    for (let run = 0; run < options.runs; run++) {
      for (const name of run % 2 === 0 ? names : [...names].reverse()) samples.get(name)?.push(measure(folder, name))
    }
    const summary = names.map((name) => {
      const list = samples.get(name) ?? []
      return { app: name, startMs: median(list.map((sample) => sample.startMs)), rawRssMb: median(list.map((sample) => sample.rawRssMb)), rssMb: median(list.map((sample) => sample.rssMb)) }
    })
    // Each run is a pair of processes started back to back; the median of the pairs' differences
    // is steadier than the difference of the medians when the machine's speed drifts.
    const [baselineRuns, pluginRuns] = names.map((name) => samples.get(name) ?? [])
    const pairDifference = (field: keyof Sample): number => median(pluginRuns.map((sample, i) => sample[field] - baselineRuns[i][field]))
    const added = { startMs: pairDifference('startMs'), rawRssMb: pairDifference('rawRssMb'), rssMb: pairDifference('rssMb') }
    // The RSS budget holds for both readings: as listening, and after a full GC.
    const met = { startMs: added.startMs <= BUDGET.startMs, rssMb: Math.max(added.rssMb, added.rawRssMb) <= BUDGET.rssMb }
    const meta = { date: new Date().toISOString(), runs: options.runs, cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version }

    const markdown = `Measured ${meta.date.slice(0, 10)} on ${meta.cores} cores (${meta.cpu}), Node ${meta.node}, from the packed package installed with production dependencies only; ` +
      `medians of ${meta.runs} fresh processes each, taken in turns; the added cost is the median of the ${meta.runs} pairs' differences (\`npm run bench -- --startup\`).\n\n` +
      '| app | start to listening | RSS when listening | RSS after GC |\n|---|---|---|---|\n' +
      summary.map((row) => `| ${row.app} | ${row.startMs.toFixed(0)} ms | ${row.rawRssMb.toFixed(1)} MB | ${row.rssMb.toFixed(1)} MB |`).join('\n') + '\n' +
      `| **added by the plugin** | **${signed(added.startMs, 0)} ms** | **${signed(added.rawRssMb, 1)} MB** | **${signed(added.rssMb, 1)} MB** |\n\n` +
      `Budget: at most +${BUDGET.startMs} ms (${met.startMs ? 'met' : '**missed**'}) and +${BUDGET.rssMb} MB RSS (${met.rssMb ? 'met' : '**missed**'}).\n`
    process.stdout.write('\n' + markdown + '\n')

    const resultsDir = options.resultsDir ?? join(options.projectRoot, 'bench', 'results')
    mkdirSync(resultsDir, { recursive: true })
    writeFileSync(join(resultsDir, 'startup.json'), JSON.stringify({ summary, added, budget: BUDGET, met, samples: Object.fromEntries(samples), meta }, null, 2) + '\n')
    writeFileSync(join(resultsDir, 'startup.md'), markdown)
    if (options.readme) {
      const readmePath = join(options.projectRoot, 'README.md')
      const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : ''
      const start = '<!-- startup:start -->'
      const end = '<!-- startup:end -->'
      if (!readme.includes(start) || !readme.includes(end) || readme.indexOf(end) < readme.indexOf(start)) {
        throw new Error(`README.md lacks the lines ${start} and ${end} (in that order)`)
      }
      writeFileSync(readmePath, readme.slice(0, readme.indexOf(start) + start.length) + '\n' + markdown + readme.slice(readme.indexOf(end)))
    }
    process.stderr.write(`bench: --startup: wrote ${join(resultsDir, 'startup.json')} and startup.md${options.readme ? ' and README.md' : ''}\n`)
    process.stdout.write(`${met.startMs ? 'MET ' : 'MISS'} start-up added ≤ ${BUDGET.startMs} ms: ${added.startMs.toFixed(1)} ms\n`)
    process.stdout.write(`${met.rssMb ? 'MET ' : 'MISS'} RSS added ≤ ${BUDGET.rssMb} MB: ${added.rawRssMb.toFixed(2)} MB when listening, ${added.rssMb.toFixed(2)} MB after GC\n`)
  } finally {
    rmSync(folder, { recursive: true, force: true })
  }
}
