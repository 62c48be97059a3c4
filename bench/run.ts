// npm run bench [-- --quick] [--peers] [--cluster] [--runs N] [--workloads W1,W6] [--systems a,b] [--generators N] [--readme]
// npm run bench -- --render [--readme]
// npm run bench -- --startup [--runs N] [--readme]   (bench/startup.ts)
// npm run bench -- --storm [--members N] [--channels N] [--scenarios restart,…] [--runs N]   (bench/storm.ts, W8)
// npm run bench -- --access-log [--runs N] [--generators N]   (bench/access-log.ts: W4 with and without per-request logs)
//
// Starts each server fresh for every measurement on one core and the load
// generator on another (taskset), runs the workloads, and reports medians of
// the runs as a table, bench/results/latest.json (quick.json with --quick), an
// SVG chart, and — with --readme — the measured tables in docs/performance.md
// (between <!-- bench:start --> and <!-- bench:end -->). --render re-publishes
// the saved bench/results/latest.json without measuring anything.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { CLUSTER_SYSTEMS, HAS_HISTORY, SYSTEMS, type SystemName } from './lib/clients.js'
import { benchCertificate, installed, serverNodeArgs, startMlesCommand, startMlesTls, startMosquitto, startNats, startRedisServer, type BenchCertificate } from './lib/peers.js'
import { joinStorm } from './lib/join-storm.js'
import { stopChild } from './lib/proc.js'
import { aggregate, chart, generatorSaturated, paramsLabel, stat, table, tablesByWorkload, type Entry } from './lib/report.js'
import type { Job, Measurement, Workload } from './generator.js'

const here = dirname(fileURLToPath(import.meta.url))
const projectRoot = join(here, '..', '..')
const resultsDir = join(projectRoot, 'bench', 'results')

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    peers: { type: 'boolean', default: false },
    cluster: { type: 'boolean', default: false },
    runs: { type: 'string' },
    workloads: { type: 'string' },
    systems: { type: 'string' },
    readme: { type: 'boolean', default: false },
    render: { type: 'boolean', default: false },
    startup: { type: 'boolean', default: false },
    storm: { type: 'boolean', default: false },
    'access-log': { type: 'boolean', default: false },
    members: { type: 'string' },
    channels: { type: 'string' },
    scenarios: { type: 'string' },
    generators: { type: 'string' }
  }
})

function fail (message: string): never {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

// --readme writes the measured tables between these markers of the performance page.
const performancePage = join(projectRoot, 'docs', 'performance.md')
const performancePageName = 'docs/performance.md'
const START = '<!-- bench:start -->'
const END = '<!-- bench:end -->'

/** The performance page split around its markers, or a clear exit when they are missing. */
function performancePageParts (): { before: string, after: string } {
  if (!existsSync(performancePage)) fail(`--readme: ${performancePageName} does not exist; it should hold the lines ${START} and ${END}`)
  const text = readFileSync(performancePage, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  const missing = [start === -1 ? START : '', end === -1 ? END : ''].filter((marker) => marker !== '')
  if (missing.length > 0) fail(`--readme: ${performancePageName} lacks the marker line ${missing.join(' and ')}; the results go between ${START} and ${END}`)
  if (end < start) fail(`--readme: in ${performancePageName}, ${END} comes before ${START}`)
  return { before: text.slice(0, start + START.length), after: text.slice(end) }
}

// The start-up cost of the plugin: its own measurement, nothing of the workloads.
if (args.startup === true) {
  const other = (['quick', 'peers', 'cluster', 'workloads', 'systems', 'render', 'generators'] as const).filter((name) => args[name] !== undefined && args[name] !== false)
  if (other.length > 0) fail(`--startup takes only --runs and --readme, not ${other.map((name) => `--${name}`).join(', ')}`)
  const startupRuns = args.runs === undefined ? 15 : Number(args.runs)
  if (!Number.isInteger(startupRuns) || startupRuns < 1 || startupRuns > 100) fail('--runs must be an integer from 1 to 100')
  const { runStartup } = await import('./startup.js')
  runStartup({ projectRoot, runs: startupRuns, readme: args.readme === true })
  process.exit(0)
}

// W8, the reconnect storm: its own harness (many MlesClient members in this process).
if (args.storm === true) {
  const other = (['quick', 'peers', 'cluster', 'workloads', 'systems', 'render', 'readme', 'startup', 'generators'] as const).filter((name) => args[name] !== undefined && args[name] !== false)
  if (other.length > 0) fail(`--storm takes only --members, --channels, --scenarios and --runs, not ${other.map((name) => `--${name}`).join(', ')}`)
  // The members run in this process: on core 1, away from the server on core 0, where the machine allows.
  if (process.env.MLES_STORM_PINNED === undefined && availableParallelism() >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0) {
    const again = spawnSync('taskset', ['-c', '1', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, MLES_STORM_PINNED: '1' } })
    process.exit(again.status ?? 1)
  }
  const { runStorm, STORM_SCENARIOS, stormTable } = await import('./storm.js')
  const members = args.members === undefined ? 15_000 : Number(args.members)
  const channels = args.channels === undefined ? 1000 : Number(args.channels)
  if (!Number.isInteger(members) || members < 1 || members > 19_000) fail('--members must be an integer from 1 to 19000 (one process holds them, 20,000 open files)')
  if (!Number.isInteger(channels) || channels < 1 || channels > members) fail('--channels must be an integer from 1 to --members')
  const scenarios = (args.scenarios ?? STORM_SCENARIOS.join(',')).split(',')
  for (const scenario of scenarios) if (!(STORM_SCENARIOS as string[]).includes(scenario)) fail(`unknown scenario ${scenario}; known: ${STORM_SCENARIOS.join(', ')}`)
  const stormRuns = args.runs === undefined ? 3 : Number(args.runs)
  if (!Number.isInteger(stormRuns) || stormRuns < 1 || stormRuns > 20) fail('--runs must be an integer from 1 to 20')
  const results = await runStorm({ projectRoot, members, channels, history: 200, scenarios: scenarios as typeof STORM_SCENARIOS, runs: stormRuns })
  process.stdout.write(stormTable(results, { date: new Date().toISOString(), cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version }) + '\n')
  process.stderr.write('bench: --storm: wrote bench/results/storm.json and storm.md\n')
  process.exit(results.every((result) => result.all_back_ms !== null) ? 0 : 1)
}

// What per-request access logs cost a join storm: W4 against the `mles` command, with and without --access-log.
if (args['access-log'] === true) {
  const other = (['quick', 'peers', 'cluster', 'workloads', 'systems', 'render', 'readme', 'startup', 'storm'] as const).filter((name) => args[name] !== undefined && args[name] !== false)
  if (other.length > 0) fail(`--access-log takes only --runs and --generators, not ${other.map((name) => `--${name}`).join(', ')}`)
  const logRuns = args.runs === undefined ? 5 : Number(args.runs)
  if (!Number.isInteger(logRuns) || logRuns < 1 || logRuns > 20) fail('--runs must be an integer from 1 to 20')
  const pinned = availableParallelism() >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0
  const generators = args.generators === undefined ? Math.max(2, availableParallelism() - 1) : Number(args.generators)
  if (!Number.isInteger(generators) || generators < 1 || generators > 64) fail('--generators must be an integer from 1 to 64')
  const { runAccessLogBench, accessLogTable } = await import('./access-log.js')
  const joiners = 4000
  const results = await runAccessLogBench({
    projectRoot,
    joiners,
    runs: logRuns,
    generators,
    serverPin: pinned ? ['taskset', '-c', '0'] : [],
    generatorCores: pinned ? Array.from({ length: availableParallelism() - 1 }, (_, i) => String(i + 1)) : [],
    generatorCommand: [process.execPath, join(here, 'generator.js')]
  })
  process.stdout.write(accessLogTable(results, { date: new Date().toISOString(), cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, joiners, generators }, resultsDir) + '\n')
  process.stderr.write('bench: --access-log: wrote bench/results/access-log.json and access-log.md\n')
  process.exit(0)
}

// Re-publishing saved results needs nothing but the saved file: no servers, peers or pinning.
if (args.render === true) {
  const measuring = (['quick', 'peers', 'cluster', 'runs', 'workloads', 'systems', 'generators'] as const).filter((name) => args[name] !== undefined && args[name] !== false)
  if (measuring.length > 0) fail(`--render re-publishes bench/results/latest.json and takes only --readme, not ${measuring.map((name) => `--${name}`).join(', ')}`)
  const savedPath = join(resultsDir, 'latest.json')
  if (!existsSync(savedPath)) fail('--render: there is no bench/results/latest.json to render; run a full `npm run bench` first')
  if (args.readme === true) performancePageParts()
  const saved = JSON.parse(readFileSync(savedPath, 'utf8')) as { results: Entry[], targets: Target[], meta: Meta }
  publish('latest', saved.results, saved.targets, saved.meta)
  process.stderr.write(`bench: rendered bench/results/latest.md and latest.svg from latest.json${args.readme === true ? ` and updated ${performancePageName}` : ''}\n`)
  process.exit(0)
}

// Checked now rather than after a run of half an hour.
if (args.readme === true) {
  if (args.quick === true || args.workloads !== undefined || args.systems !== undefined || args.runs !== undefined) {
    fail(`--readme publishes only a full run into ${performancePageName}: drop --quick, --runs, --workloads and --systems`)
  }
  performancePageParts()
}

const quick = args.quick ?? false
const runs = args.runs === undefined ? (quick ? 1 : 3) : Number(args.runs)
if (!Number.isInteger(runs) || runs < 1 || runs > 20) fail('--runs must be an integer from 1 to 20')
let workloads = (args.workloads ?? 'W1,W2,W3,W4,W5,W6').split(',') as Workload[]
for (const workload of workloads) if (!['W1', 'W2', 'W3', 'W4', 'W5', 'W6'].includes(workload)) fail(`unknown workload ${workload}`)
/** W6's certificate, made once for the run (openssl). */
const certificate: BenchCertificate | null = workloads.includes('W6') ? benchCertificate() : null
if (workloads.includes('W6') && certificate === null) {
  process.stderr.write('bench: openssl is not installed (or failed); skipping W6 (Debian: apt-get install openssl)\n')
  workloads = workloads.filter((workload) => workload !== 'W6')
}

const peersWanted = args.peers ?? false
const clusterWanted = args.cluster ?? false
let systems: SystemName[] = args.systems === undefined
  ? SYSTEMS.filter((system) => ((system !== 'mosquitto' && system !== 'nats') || peersWanted) && (!CLUSTER_SYSTEMS.has(system) || clusterWanted))
  : args.systems.split(',') as SystemName[]
for (const system of systems) if (!SYSTEMS.includes(system)) fail(`unknown system ${system}; known: ${SYSTEMS.join(', ')}`)
const PACKAGES: Partial<Record<SystemName, [string, string]>> = {
  mosquitto: ['mosquitto', 'mosquitto'],
  nats: ['nats-server', 'nats-server'],
  'mles-redis': ['redis-server', 'redis-server'],
  'mles-workers2': ['redis-server', 'redis-server'],
  'socket.io-redis': ['redis-server', 'redis-server']
}
systems = systems.filter((system) => {
  const needed = PACKAGES[system]
  if (needed === undefined || installed(needed[0])) return true
  process.stderr.write(`bench: ${needed[0]} is not installed; skipping ${system} (Debian: apt-get install ${needed[1]})\n`)
  return false
})
/** Over TLS (W6): the `mles` command with its own certificate, the ws ceiling over https, nats-server's TLS WebSocket listener. */
const TLS_SYSTEMS: ReadonlySet<SystemName> = new Set<SystemName>(['fastify-mles', 'ws-ceiling', 'nats'])
/** The cluster systems take part in W2 only: the workload the workers target is about. */
const systemsFor = (workload: Workload): SystemName[] => systems.filter((system) => workload === 'W6' ? TLS_SYSTEMS.has(system) : workload === 'W2' || !CLUSTER_SYSTEMS.has(system))

const canPin = availableParallelism() >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0
const serverPin = canPin ? ['taskset', '-c', '0'] : []
const generatorPin = canPin ? ['taskset', '-c', '1'] : []
/** W4's generator processes: one per core beside the server's, and at least two. */
const joinGenerators = args.generators === undefined ? Math.max(2, availableParallelism() - 1) : Number(args.generators)
if (!Number.isInteger(joinGenerators) || joinGenerators < 1 || joinGenerators > 64) fail('--generators must be an integer from 1 to 64')

const timing = quick ? { warmupMs: 200, durationMs: 500 } : { warmupMs: 1000, durationMs: 3000 }
const sizes = {
  fanOutN: quick ? [100] : [100, 1000],
  payloads: quick ? [64] : [64, 1024],
  pairs: quick ? 100 : 1000,
  idleConnections: quick ? 1000 : 10_000,
  joiners: quick ? 100 : 4000,
  history: 200,
  slow: 5
}

interface RunningServer { pid: number, port: number, stop: () => Promise<void> }


async function startServer (system: SystemName, workload: Workload): Promise<RunningServer> {
  if (workload === 'W6') return await startTlsServer(system, certificate as BenchCertificate)
  if (system === 'socket.io-redis') {
    // Pinned like the other single-process servers; its Redis is not.
    const redis = await startRedisServer()
    try {
      const server = await startNodeServer(system, { MLES_BENCH_REDIS_URL: `redis://127.0.0.1:${redis.port}` })
      return { ...server, stop: async () => { await server.stop(); await stopChild(redis.child) } }
    } catch (error) {
      await stopChild(redis.child)
      throw error
    }
  }
  if (CLUSTER_SYSTEMS.has(system)) {
    // Not pinned: the workers are there to use both cores (Redis and the generator share them).
    const redis = await startRedisServer()
    try {
      const { child, port } = await startMlesCommand(join(projectRoot, 'dist', 'example-app', 'cli.js'), redis.port, system === 'mles-workers2' ? 2 : 1)
      return { pid: child.pid as number, port, stop: async () => { await stopChild(child); await stopChild(redis.child) } }
    } catch (error) {
      await stopChild(redis.child)
      throw error
    }
  }
  if (system === 'mosquitto' || system === 'nats') {
    const { child, port } = system === 'mosquitto' ? await startMosquitto(serverPin) : await startNats(serverPin)
    return { pid: child.pid as number, port, stop: async () => { await stopChild(child) } }
  }
  return await startNodeServer(system)
}

/** W6: each system serving TLS with the run's certificate, pinned like the others. */
async function startTlsServer (system: SystemName, tls: BenchCertificate): Promise<RunningServer> {
  if (system === 'fastify-mles') {
    const { child, port } = await startMlesTls(join(projectRoot, 'dist', 'example-app', 'cli.js'), serverPin, tls)
    return { pid: child.pid as number, port, stop: async () => { await stopChild(child) } }
  }
  if (system === 'nats') {
    const { child, port } = await startNats(serverPin, tls)
    return { pid: child.pid as number, port, stop: async () => { await stopChild(child) } }
  }
  if (system === 'ws-ceiling') return await startNodeServer(system, { MLES_BENCH_TLS_CERT: tls.cert, MLES_BENCH_TLS_KEY: tls.key })
  throw new Error(`${system} has no TLS variant in the bench`)
}

/** One of the Node servers of bench/servers, started (pinned) and ready on its port. */
async function startNodeServer (system: SystemName, env: Record<string, string> = {}): Promise<RunningServer> {
  const script = join(here, 'servers', `${system}.js`)
  const command = [...serverPin, process.execPath, '--expose-gc', ...serverNodeArgs(), script]
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const port = await new Promise<number>((resolve, reject) => {
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /READY (\d+)/.exec(output)
      if (match !== null) resolve(Number(match[1]))
    })
    child.once('exit', (code) => { reject(new Error(`${system} server exited with ${code}`)) })
  })
  return { pid: child.pid as number, port, stop: async () => { await stopChild(child) } }
}

/** Whether the server is one of bench/servers (it collects garbage on SIGUSR2; the `mles` command and the peers are not). */
function isBenchNodeServer (system: SystemName, workload: Workload): boolean {
  if (workload === 'W6') return system === 'ws-ceiling'
  return system !== 'mosquitto' && system !== 'nats' && (!CLUSTER_SYSTEMS.has(system) || system === 'socket.io-redis')
}

async function measure (system: SystemName, job: Omit<Job, 'system' | 'port' | 'serverPid' | 'serverIsNode'>): Promise<Measurement> {
  const server = await startServer(system, job.workload)
  try {
    const full: Job = { ...job, system, port: server.port, serverPid: server.pid, serverIsNode: isBenchNodeServer(system, job.workload) }
    if (job.workload === 'W4') {
      // One process per core beside the server's (round-robin), so the generators are not the limit where the machine has the cores.
      const cores = canPin ? Array.from({ length: availableParallelism() - 1 }, (_, i) => String(i + 1)) : []
      return await joinStorm(full, { parts: joinGenerators, cores, command: [process.execPath, join(here, 'generator.js')] })
    }
    const command = [...generatorPin, process.execPath, join(here, 'generator.js'), JSON.stringify(full)]
    const generator = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
    let output = ''
    generator.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const limit = job.warmupMs + job.durationMs + 90_000
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => { generator.kill('SIGKILL') }, limit)
      generator.once('exit', (exitCode) => { clearTimeout(timer); resolve(exitCode) })
    })
    const line = /RESULT (.*)/.exec(output)
    if (code !== 0 || line === null) throw new Error(`generator for ${system} ${job.workload} failed (exit ${code})`)
    return JSON.parse(line[1]) as Measurement
  } finally {
    await server.stop()
  }
}

const entries: Entry[] = []

type JobTemplate = Omit<Job, 'system' | 'port' | 'serverPid' | 'serverIsNode'>

/**
 * Measures `systems` on one workload, `runs` times each, round-robin (run 1 of
 * every system, then run 2, ...), so that drift in the machine's speed falls
 * on all systems alike instead of on whichever ran during a slow spell.
 */
async function series (systemsToRun: SystemName[], workload: Workload, params: Record<string, number | string>, jobFor: (system: SystemName) => JobTemplate): Promise<Map<SystemName, Entry>> {
  const measurements = new Map<SystemName, Measurement[]>(systemsToRun.map((system) => [system, []]))
  for (let run = 0; run < runs; run++) {
    for (const system of systemsToRun) {
      try {
        measurements.get(system)?.push(await measure(system, jobFor(system)))
      } catch (error) {
        process.stderr.write(`bench: ${system} ${workload} ${paramsLabel(params)} run ${run + 1}: ${(error as Error).message}\n`)
      }
    }
  }
  const done = new Map<SystemName, Entry>()
  for (const [system, list] of measurements) {
    if (list.length === 0) continue
    const entry: Entry = { system, workload, params, runs: list.length }
    for (const metric of Object.keys(list[0])) entry[metric] = aggregate(list.map((m) => m[metric]))
    entries.push(entry)
    done.set(system, entry)
    process.stderr.write(`  ${workload} ${paramsLabel(params).padEnd(28)} ${system.padEnd(13)} ` +
      Object.keys(list[0]).map((metric) => `${metric}=${Number(stat(entry, metric)?.median.toPrecision(4))}`).join(' ') + '\n')
  }
  return done
}

const started = Date.now()
process.stderr.write(`bench: ${quick ? 'quick' : 'full'} run, ${runs} run(s) each, systems ${systems.join(', ')}; ` +
  `${canPin ? 'server on core 0, generator on core 1' : 'no CPU pinning (needs 2 cores and taskset)'}\n`)

for (const workload of workloads) {
  if (workload === 'W1' || workload === 'W6') {
    for (const n of sizes.fanOutN) {
      for (const size of sizes.payloads) {
        const saturated = await series(systemsFor(workload), workload, { n, size, mode: 'sat' }, () => ({ workload, n, size, mode: 'sat', ...timing }))
        // The fixed rate is half of each system's own saturated rate, from this run.
        const maxRate = new Map([...saturated].map(([system, entry]) => [system, stat(entry, 'messages_per_s')?.median ?? 0]))
        const rated = systemsFor(workload).filter((system) => (maxRate.get(system) ?? 0) > 0)
        await series(rated, workload, { n, size, mode: 'rate' }, (system) => ({ workload, n, size, mode: 'rate', rate: Math.round((maxRate.get(system) ?? 0) / 2), ...timing }))
      }
    }
  } else if (workload === 'W2') {
    await series(systemsFor('W2'), 'W2', { pairs: sizes.pairs }, () => ({ workload, pairs: sizes.pairs, ...timing }))
  } else if (workload === 'W3') {
    const params = { connections: sizes.idleConnections, channels: sizes.idleConnections / 10 }
    await series(systemsFor('W3'), 'W3', params, () => ({ workload, ...params, settleMs: quick ? 0 : 10_000, ...timing }))
  } else if (workload === 'W4') {
    const params = { joiners: sizes.joiners, history: sizes.history }
    await series(systemsFor('W4').filter((s) => HAS_HISTORY.has(s)), 'W4', params, () => ({ workload, ...params, ...timing }))
  } else {
    const params = { n: 100, size: 64, slow: sizes.slow }
    await series(systemsFor('W5'), 'W5', params, () => ({ workload, n: 100, size: 64, mode: 'sat', slow: sizes.slow, warmupMs: timing.warmupMs, durationMs: timing.durationMs * (quick ? 2 : 3) }))
  }
}

// Targets (issue #3), checked on this run's medians where the data exists.
const targets: Target[] = []
const find = (system: string, workload: string, params: Record<string, number | string>): Entry | undefined =>
  entries.find((entry) => entry.system === system && entry.workload === workload && paramsLabel(entry.params) === paramsLabel(params))
const median = (entry: Entry | undefined, metric: string): number | undefined => entry === undefined ? undefined : stat(entry, metric)?.median
/** A target measured on the `from` entries; said to be generator-bound when one of them was (it then says little about the server). */
const check = (target: string, from: Array<Entry | undefined>, value: number | undefined, met: (value: number) => boolean, describe: (value: number) => string): void => {
  if (value === undefined || !Number.isFinite(value)) return
  const bound = from.some((entry) => entry !== undefined && generatorSaturated(entry))
  targets.push({ target, value: describe(value) + (bound ? ' (generator saturated in this run)' : ''), met: met(value) })
}
const ratio = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined ? undefined : a / b
const w1 = { n: 100, size: 64, mode: 'sat' }
const ours = find('fastify-mles', 'W1', w1)
for (const n of sizes.fanOutN) {
  for (const size of sizes.payloads) {
    const params = { n, size, mode: 'sat' }
    const [mine, ceiling] = [find('fastify-mles', 'W1', params), find('ws-ceiling', 'W1', params)]
    check(`W1 sat N=${n} ${size} B: server µs/delivery ≤ 1.25× ws-ceiling`, [mine, ceiling], ratio(median(mine, 'server_us_per_delivery'), median(ceiling, 'server_us_per_delivery')), (r) => r <= 1.25, (r) => `${r.toFixed(2)}×`)
  }
}
const dOurs = median(ours, 'deliveries_per_s')
const socketIo = find('socket.io', 'W1', w1)
check('W1 sat throughput ≥ 10× socket.io', [ours, socketIo], ratio(dOurs, median(socketIo, 'deliveries_per_s')), (r) => r >= 10, (r) => `${r.toFixed(1)}×`)
const nats = find('nats', 'W1', w1)
check('W1 sat throughput ahead of nats-server', [ours, nats], ratio(dOurs, median(nats, 'deliveries_per_s')), (r) => r > 1, (r) => `${r.toFixed(2)}×`)
// W6: the same fan-out over TLS, against the same ceiling over https and nats-server's TLS listener.
for (const n of sizes.fanOutN) {
  for (const size of sizes.payloads) {
    const params = { n, size, mode: 'sat' }
    const [mine, ceiling, natsTls] = [find('fastify-mles', 'W6', params), find('ws-ceiling', 'W6', params), find('nats', 'W6', params)]
    const us = (entry: Entry | undefined): number | undefined => median(entry, 'server_us_per_delivery')
    check(`W6 TLS sat N=${n} ${size} B: server µs/delivery ≤ 1.25× ws-ceiling over https`, [mine, ceiling], ratio(us(mine), us(ceiling)), (r) => r <= 1.25, (r) => `${r.toFixed(2)}×`)
    check(`W6 TLS sat N=${n} ${size} B: server µs/delivery below nats-server's`, [mine, natsTls], ratio(us(mine), us(natsTls)), (r) => r < 1, (r) => `${r.toFixed(2)}×`)
  }
}
const halfRate = find('fastify-mles', 'W1', { n: 100, size: 64, mode: 'rate' })
check('W1 p99 ≤ 10 ms at 50 % of own max (N = 100, 64 B)', [halfRate], median(halfRate, 'p99_ms'), (v) => v <= 10, (v) => `${v.toFixed(2)} ms`)
const w2 = { pairs: sizes.pairs }
const [memory2, ws2, oneWorker, twoWorkers, socketIoRedis] = (['fastify-mles', 'ws-basic', 'mles-redis', 'mles-workers2', 'socket.io-redis'] as const).map((system) => find(system, 'W2', w2))
const rt = (entry: Entry | undefined): number | undefined => median(entry, 'round_trips_per_s')
check('W2 round trips ≥ 0.9× raw ws', [memory2, ws2], ratio(rt(memory2), rt(ws2)), (r) => r >= 0.9, (r) => `${r.toFixed(2)}×`)
check('W2 with --workers 2 and Redis ≥ 1.6× one worker with Redis', [twoWorkers, oneWorker], ratio(rt(twoWorkers), rt(oneWorker)), (r) => r >= 1.6, (r) => `${r.toFixed(2)}×`)
check('W2 with --workers 2 and Redis ≥ 1.6× the single-process plugin', [twoWorkers, memory2], ratio(rt(twoWorkers), rt(memory2)), (r) => r >= 1.6, (r) => `${r.toFixed(2)}×`)
check('W2 with one node on Redis ≥ 0.8× the in-memory node', [oneWorker, memory2], ratio(rt(oneWorker), rt(memory2)), (r) => r >= 0.8, (r) => `${r.toFixed(2)}×`)
// The node's own CPU per frame (W2: one delivery per frame), Redis's not counted: what the Redis path adds to a frame.
const usMemory = median(memory2, 'server_us_per_delivery')
const usRedis = median(oneWorker, 'server_us_per_delivery')
if (usMemory !== undefined && usRedis !== undefined) check('W2 server µs per frame added by the Redis path ≤ 4 µs', [oneWorker, memory2], usRedis - usMemory, (v) => v <= 4, (v) => `+${v.toFixed(1)} µs (${usRedis.toFixed(1)} against ${usMemory.toFixed(1)})`)
check('W2 with one node on Redis ≥ 3× socket.io + Redis adapter', [oneWorker, socketIoRedis], ratio(rt(oneWorker), rt(socketIoRedis)), (r) => r >= 3, (r) => `${r.toFixed(1)}×`)
// W4: the joins/s of the issue's target, and the server's CPU per join, which holds even when the generators set the pace.
const w4 = { joiners: sizes.joiners, history: sizes.history }
const [joins, joinsCeiling] = [find('fastify-mles', 'W4', w4), find('ws-ceiling', 'W4', w4)]
check('W4 joins/s ≥ 0.9× ws-ceiling', [joins, joinsCeiling], ratio(median(joins, 'joins_per_s'), median(joinsCeiling, 'joins_per_s')), (r) => r >= 0.9, (r) => `${r.toFixed(2)}×`)
check('W4 server µs per join ≤ 1.1× ws-ceiling', [joins, joinsCeiling], ratio(median(joins, 'server_us_per_join'), median(joinsCeiling, 'server_us_per_join')), (r) => r <= 1.1, (r) => `${r.toFixed(2)}×`)
const idle = find('fastify-mles', 'W3', { connections: sizes.idleConnections, channels: sizes.idleConnections / 10 })
check('W3 ≤ 6 KB per idle connection (settled)', [idle], median(idle, 'kb_per_conn'), (v) => v <= 6, (v) => `${v.toFixed(2)} KB`)
const w5 = find('fastify-mles', 'W5', { n: 100, size: 64, slow: sizes.slow })
check('W5 readers within 10 % of plain W1', [w5, ours], ratio(median(w5, 'deliveries_per_s'), dOurs), (r) => r >= 0.9, (r) => `${r.toFixed(2)}×`)
const growth = w5 === undefined ? undefined : (median(w5, 'rss_mb_max') ?? 0) - (median(w5, 'rss_mb_start') ?? 0)
check('W5 server memory bounded (growth ≤ 5 slow × 4 MiB + 44 MiB)', [w5], growth, (v) => v <= 64, (v) => `+${v.toFixed(1)} MB`)

interface Target { target: string, value: string, met: boolean }
interface Meta { date: string, quick: boolean, runs: number, cpu: string, cores: number, node: string, pinned: boolean, warmup_ms: number, duration_ms: number, seconds: number }

/** Writes the table, JSON, SVG and markdown (and the performance page's section when asked). */
function publish (base: string, results: Entry[], targetList: Target[], meta: Meta): void {
  process.stdout.write('\n' + table(results) + '\n\n')
  if (meta.quick) process.stdout.write('quick run: a smoke test of the bench, too short to judge the targets\n')
  else for (const t of targetList) process.stdout.write(`${t.met ? 'MET ' : 'MISS'} ${t.target}: ${t.value}\n`)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, `${base}.json`), JSON.stringify({ results, targets: targetList, meta }, null, 2) + '\n')
  writeFileSync(join(resultsDir, `${base}.svg`), chart(results))
  const markdown = `Measured ${meta.date.slice(0, 10)} on ${meta.cores} cores (${meta.cpu}), Node ${meta.node}; ` +
    `medians of ${meta.runs} run(s) per system, taken round-robin, ${meta.duration_ms / 1000} s each` +
    `${meta.pinned ? '; server and generator pinned to separate cores' : ''}.\n\n` +
    `| target | this run | |\n|---|---|---|\n` +
    targetList.map((t) => `| ${t.target} | ${t.value} | ${t.met ? 'met' : '**missed**'} |`).join('\n') + '\n\n' +
    tablesByWorkload(results) + '\n'
  writeFileSync(join(resultsDir, `${base}.md`), markdown)
  if (args.readme === true && base === 'latest') {
    const { before, after } = performancePageParts()
    writeFileSync(performancePage, before + '\n' + markdown + after)
  }
}

const meta: Meta = {
  date: new Date().toISOString(),
  quick,
  runs,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: availableParallelism(),
  node: process.version,
  pinned: canPin,
  warmup_ms: timing.warmupMs,
  duration_ms: timing.durationMs,
  seconds: Math.round((Date.now() - started) / 1000)
}
// Only a full, default run replaces the published results; quick and partial runs write beside them.
const partial = args.workloads !== undefined || args.systems !== undefined || args.runs !== undefined
const base = quick ? 'quick' : partial ? 'partial' : 'latest'
publish(base, entries, targets, meta)
process.stderr.write(`bench: done in ${meta.seconds} s; wrote bench/results/${base}.json, ${base}.svg, ${base}.md\n`)
