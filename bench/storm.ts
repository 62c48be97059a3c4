// npm run bench -- --storm [--members N] [--readme-free: results in bench/results/storm.{json,md}]
//
// W8, the reconnect storm: `members` MlesClient instances (default reconnect
// backoff and jitter; deduplication off, so that each can count its replay)
// on `channels` channels holding `history` frames each. The server then goes
// away under them, and the time until every member is back with its replay
// complete is measured, with failures, give-ups and the server's peak RSS:
//
// - restart: the `mles` command stopped (SIGTERM) and started again on the
//   same port, empty: a member is back once it is open again;
// - restart with --history-dir: the same, the history on disk, so every
//   member must also have its full replay (`history` frames) again;
// - --workers 2 --redis, SIGUSR2: the workers replaced one at a time, the
//   history in Redis; every member must have been cut, be open again, and
//   have its full replay.
//
// The server is pinned to core 0 (the members run in this process, on the
// other core, where they can); a single-process server, like the workers, is
// the `mles` command as an operator runs it, limits off. It is started,
// restarted and signalled by bench/storm-supervisor on core 0, as systemd
// would, so that this busy process's event loop adds nothing to the downtime.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { MlesClient } from 'fastify-mles/client'
import { freePort, startRedisServer } from './lib/peers.js'
import { cpuMicrosByProcess, inBatches, rssKiB, sleep, stopChild } from './lib/proc.js'

export type StormScenario = 'restart' | 'restart-history-dir' | 'workers-sigusr2'
export const STORM_SCENARIOS: StormScenario[] = ['restart', 'restart-history-dir', 'workers-sigusr2']

export interface StormOptions {
  projectRoot: string
  members: number
  channels: number
  /** Frames each channel holds before the storm (and the server's history limit). */
  history: number
  scenarios: StormScenario[]
  /** How long to wait for every member to be back before calling the run failed. */
  timeoutMs?: number
  /** Runs of each scenario; the table gives the median run and the range (default 1). */
  runs?: number
  /** Where storm.json and storm.md go; default bench/results. */
  resultsDir?: string
  /** Progress lines on stderr. */
  quiet?: boolean
}

export interface StormResult {
  scenario: StormScenario
  members: number
  channels: number
  history: number
  /** From the signal (SIGTERM, SIGUSR2) until every member was back with its replay complete; null if not within the timeout. */
  all_back_ms: number | null
  /** From the signal until the restarted server served again (restart scenarios). */
  server_back_ms: number | null
  /** Of that: from SIGTERM until the old server had exited (closing its members with 1001), and from starting the new one until it served. */
  stop_ms: number | null
  start_ms: number | null
  /** Members back within the timeout. */
  back: number
  /** Closes after the signal other than the storm itself (1001 going away) and attempts on a server not listening yet (1006): joins the server refused or cut. */
  failures: number
  /** Reconnection attempts after the signal beyond one per member (the server was not listening yet, or cut the member again). */
  retries: number
  /** Members whose client gave up (a close without a reconnect). */
  give_ups: number
  /** Members whose replay after coming back was not exactly `history` frames (history-dir and workers scenarios). */
  short_replays: number
  peak_rss_mb: number
  /** CPU the server used (all its processes, for the old one only what it used until it exited) from the signal until all were back, in seconds. */
  server_cpu_s: number
  /** The members' own process (one core) over that time, in % of a core: near 100, the clients set the pace, not the server. */
  members_cpu_pct: number
  /** Whether the target held: all back within 10 s, no failures, no give-up (for the median run). */
  met: boolean
  /** With several runs: every run's all_back_ms, in the order run (this result is the median one). */
  all_back_runs_ms?: Array<number | null>
}

const TARGET_MS = 10_000
const CONNECT_CONCURRENCY = 200

interface Member {
  client: MlesClient
  /** Frames since the last open. */
  frames: number
  opens: number
  /** Opens after the signal. */
  reopened: number
  closesAfterSignal: number
  /** Reconnections scheduled after the signal. */
  attempts: number
  gaveUp: boolean
}

function progress (options: StormOptions, line: string): void {
  if (options.quiet !== true) process.stderr.write(`bench: --storm: ${line}\n`)
}

// The machine's cores, not this process's (it may run pinned to one, by run.ts): a child inherits the
// parent's affinity, so the server is placed explicitly — core 0, or every core for the workers.
const cores = cpus().length
const canPin = cores >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0
const pin = canPin ? ['taskset', '-c', '0'] : []
const everyCore = canPin ? ['taskset', '-c', `0-${cores - 1}`] : []

/** The supervisor's script: the compiled one beside this file, or the TypeScript source under tsx (the tests). */
const here = dirname(fileURLToPath(import.meta.url))
const supervisorCommand = import.meta.url.endsWith('.ts')
  ? [process.execPath, '--import', 'tsx', join(here, 'storm-supervisor.ts')]
  : [process.execPath, join(here, 'storm-supervisor.js')]

/**
 * The `mles` command under bench/storm-supervisor, which restarts and signals
 * it from the server's core, as systemd would, away from this busy process.
 */
class Supervised {
  private readonly lines: string[] = []
  private readonly waiting: Array<() => void> = []
  private ended = false
  serverPid = 0

  private constructor (private readonly child: ChildProcess) {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.lines.push(line)
      for (const wake of this.waiting.splice(0)) wake()
    })
    child.once('exit', () => {
      this.ended = true
      for (const wake of this.waiting.splice(0)) wake()
    })
  }

  get pid (): number {
    return this.child.pid as number
  }

  /** Starts the `mles` command on `port` and resolves once it serves. */
  static async start (projectRoot: string, port: number, history: number, extra: string[]): Promise<Supervised> {
    // Workers are there to use every core.
    const job = { cli: join(projectRoot, 'dist', 'example-app', 'cli.js'), args: ['--no-tls', '--limit', String(history), ...extra], pin: extra.includes('--workers') ? everyCore : pin, port }
    const command = [...pin, ...supervisorCommand, JSON.stringify(job)]
    const supervised = new Supervised(spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] }))
    supervised.serverPid = Number((await supervised.next('SERVING ')).slice('SERVING '.length))
    return supervised
  }

  /** The next line starting with `prefix` (a FAILED line or the supervisor's exit is an error). */
  private async next (prefix: string): Promise<string> {
    for (;;) {
      const index = this.lines.findIndex((line) => line.startsWith(prefix) || line.startsWith('FAILED '))
      if (index !== -1) {
        const [line] = this.lines.splice(index, 1)
        if (line.startsWith('FAILED ')) throw new Error(`the storm's server: ${line.slice('FAILED '.length)}`)
        return line
      }
      if (this.ended) throw new Error(`the storm's supervisor exited before saying ${prefix.trim()}`)
      await new Promise<void>((resolve) => { this.waiting.push(resolve) })
    }
  }

  /** SIGTERM, the exit awaited, a new server on the same port: the time each took, as the supervisor saw it. */
  async restart (): Promise<{ stopMs: number, startMs: number }> {
    this.child.stdin?.write('RESTART\n')
    const reply = JSON.parse((await this.next('RESTARTED ')).slice('RESTARTED '.length)) as { stop_ms: number, start_ms: number, pid: number }
    this.serverPid = reply.pid
    return { stopMs: reply.stop_ms, startMs: reply.start_ms }
  }

  async signal (name: NodeJS.Signals): Promise<void> {
    this.child.stdin?.write(`SIGNAL ${name}\n`)
    await this.next('SIGNALLED')
  }

  async stop (): Promise<void> {
    if (this.ended) return
    this.child.stdin?.end('STOP\n')
    await Promise.race([this.next('STOPPED').catch(() => ''), sleep(20_000)])
    await stopChild(this.child)
  }
}

/** Fills every channel with `history` frames from one short-lived client each. */
async function fill (url: string, options: StormOptions): Promise<void> {
  await inBatches(options.channels, CONNECT_CONCURRENCY, async (c) => {
    const filler = new MlesClient(url, { uid: 'filler', channel: `c${c}`, dedup: 0, reconnect: false })
    await filler.ready
    for (let i = 0; i < options.history; i++) filler.send(`c${c} frame ${i}`)
    while (filler.bufferedAmount > 0) await sleep(5)
    await sleep(300)
    await filler.close()
  })
}

async function waitUntil (condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

/** One scenario, from an empty server to the members back after the storm. */
async function runScenario (scenario: StormScenario, options: StormOptions): Promise<StormResult> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const port = await freePort()
  const historyDir = scenario === 'restart-history-dir' ? mkdtempSync(join(tmpdir(), 'mles-storm-history-')) : null
  const redis = scenario === 'workers-sigusr2' ? await startRedisServer() : null
  const extra = historyDir !== null
    ? ['--history-dir', historyDir]
    : redis !== null ? ['--redis', `redis://127.0.0.1:${redis.port}`, '--workers', '2'] : []
  const server = await Supervised.start(options.projectRoot, port, options.history, extra)
  const url = `ws://127.0.0.1:${port}/`
  const members: Member[] = []
  let signalled = false
  let failures = 0
  const failureCodes = new Map<number, number>()
  try {
    progress(options, `${scenario}: filling ${options.channels} channels with ${options.history} frames`)
    await fill(url, options)
    progress(options, `${scenario}: joining ${options.members} members`)
    await inBatches(options.members, CONNECT_CONCURRENCY, async (i) => {
      const member: Member = { client: new MlesClient(url, { uid: `m${i}`, channel: `c${i % options.channels}`, dedup: 0 }), frames: 0, opens: 0, reopened: 0, closesAfterSignal: 0, attempts: 0, gaveUp: false }
      const { client } = member
      const count = (): void => { member.frames++ }
      client.on('message', count)
      client.on('join', count)
      client.on('open', () => {
        member.frames = 0
        member.opens++
        if (signalled) member.reopened++
      })
      client.on('close', ({ code, willReconnect }) => {
        if (signalled) {
          member.closesAfterSignal++
          if (code !== 1001 && code !== 1006) {
            failures++
            failureCodes.set(code, (failureCodes.get(code) ?? 0) + 1)
          }
        }
        if (!willReconnect) member.gaveUp = true
      })
      client.on('reconnecting', () => { if (signalled) member.attempts++ })
      client.on('error', () => {})
      members.push(member)
      await client.ready
    })
    // Each member's first replay: the channel's history as it joined (at least `history` frames stored by then).
    if (!await waitUntil(() => members.every((member) => member.frames >= options.history), timeoutMs)) {
      const short = members.filter((member) => member.frames < options.history)
      throw new Error(`${short.length} members did not get their first replay of ${options.history} frames (e.g. ${short[0]?.client.uid} in ${short[0]?.client.channel}: ${short[0]?.frames})`)
    }
    await sleep(500)

    let peakKiB = 0
    // Every server process's CPU as last seen (workers come and go, the old server exits): the sum of what each used since the signal.
    // The supervisor's own (it only waits) is left out.
    const serverCpu = (into?: Map<number, number>): Map<number, number> => {
      const seen = cpuMicrosByProcess(server.pid, into)
      seen.delete(server.pid)
      return seen
    }
    const cpuAtSignal = serverCpu()
    const cpuSeen = new Map<number, number>()
    const sampleCpu = (): void => { serverCpu(cpuSeen) }
    const sampler = setInterval(() => {
      peakKiB = Math.max(peakKiB, rssKiB(server.serverPid))
      sampleCpu()
    }, 50)
    const ownCpuBefore = process.cpuUsage()
    const started = Date.now()
    let serverBackMs: number | null = null
    let stopMs: number | null = null
    let startMs: number | null = null
    signalled = true
    progress(options, `${scenario}: ${scenario === 'workers-sigusr2' ? 'SIGUSR2' : 'restarting the server'}`)
    if (scenario === 'workers-sigusr2') {
      await server.signal('SIGUSR2')
    } else {
      sampleCpu()
      ;({ stopMs, startMs } = await server.restart())
      serverBackMs = stopMs + startMs
    }
    // Restarted empty, a member's replay is whatever rejoined before it: open again is all it can be.
    const needsReplay = scenario !== 'restart'
    const isBack = (member: Member): boolean => member.reopened > 0 && member.client.state === 'open' && (!needsReplay || member.frames >= options.history)
    const allBack = await waitUntil(() => members.every(isBack) || members.every((member) => isBack(member) || member.gaveUp), timeoutMs)
    const allBackMs = allBack && members.every(isBack) ? Date.now() - started : null
    sampleCpu()
    let serverCpuMicros = 0
    for (const [pid, micros] of cpuSeen) serverCpuMicros += micros - (cpuAtSignal.get(pid) ?? 0)
    const serverCpuS = serverCpuMicros / 1e6
    if (scenario === 'workers-sigusr2') {
      const primary = (cpuSeen.get(server.serverPid) ?? 0) - (cpuAtSignal.get(server.serverPid) ?? 0)
      const workers = [...cpuSeen].filter(([pid]) => pid !== server.serverPid).map(([pid, micros]) => `${((micros - (cpuAtSignal.get(pid) ?? 0)) / 1e6).toFixed(1)} s`)
      progress(options, `${scenario}: server CPU: the primary ${(primary / 1e6).toFixed(1)} s, the workers (old and new) ${workers.join(', ')}`)
    }
    const ownCpu = process.cpuUsage(ownCpuBefore)
    const membersCpuPct = 100 * (ownCpu.user + ownCpu.system) / 1000 / Math.max(1, Date.now() - started)
    await sleep(200)
    clearInterval(sampler)
    if (failureCodes.size > 0) progress(options, `${scenario}: closes by code after the signal: ${JSON.stringify(Object.fromEntries(failureCodes))}`)
    const short = members.filter((member) => member.reopened > 0 && needsReplay && member.frames !== options.history)
    if (short.length > 0) progress(options, `${scenario}: replays of other than ${options.history} frames: ${short.slice(0, 10).map((member) => `${member.client.uid}@${member.client.channel}=${member.frames} (opened ${member.reopened}×, ${member.client.state})`).join(', ')}`)
    const notBack = members.filter((member) => !isBack(member) && member.reopened === 0)
    if (notBack.length > 0) progress(options, `${scenario}: never reopened: ${notBack.length} (${notBack.slice(0, 5).map((member) => `${member.client.uid} ${member.client.state}`).join(', ')})`)
    const result: StormResult = {
      scenario,
      members: options.members,
      channels: options.channels,
      history: options.history,
      all_back_ms: allBackMs,
      server_back_ms: serverBackMs,
      stop_ms: stopMs,
      start_ms: startMs,
      back: members.filter(isBack).length,
      failures,
      retries: members.reduce((sum, member) => sum + Math.max(0, member.attempts - 1), 0),
      give_ups: members.filter((member) => member.gaveUp).length,
      short_replays: needsReplay ? members.filter((member) => member.reopened > 0 && member.frames !== options.history).length : 0,
      peak_rss_mb: peakKiB / 1024,
      server_cpu_s: serverCpuS,
      members_cpu_pct: membersCpuPct,
      met: false
    }
    result.met = result.all_back_ms !== null && result.all_back_ms <= TARGET_MS && result.failures === 0 && result.give_ups === 0 && result.short_replays === 0
    progress(options, `${scenario}: ${JSON.stringify(result)}`)
    return result
  } finally {
    signalled = false
    await Promise.allSettled(members.map(async (member) => { await member.client.close() }))
    await server.stop()
    if (redis !== null) await stopChild(redis.child)
    if (historyDir !== null) rmSync(historyDir, { recursive: true, force: true })
  }
}

/** Runs the scenarios in turn and writes storm.json and storm.md. */
export async function runStorm (options: StormOptions): Promise<StormResult[]> {
  const results: StormResult[] = []
  const runs = options.runs ?? 1
  for (const scenario of options.scenarios) {
    const each: StormResult[] = []
    for (let run = 0; run < runs; run++) each.push(await runScenario(scenario, options))
    // The median run by time until all were back (a run that timed out counts as the longest).
    const sorted = [...each].sort((a, b) => (a.all_back_ms ?? Infinity) - (b.all_back_ms ?? Infinity))
    const median = sorted[Math.floor((sorted.length - 1) / 2)]
    results.push(runs === 1 ? median : { ...median, all_back_runs_ms: each.map((result) => result.all_back_ms) })
  }
  const resultsDir = options.resultsDir ?? join(options.projectRoot, 'bench', 'results')
  mkdirSync(resultsDir, { recursive: true })
  const meta = { date: new Date().toISOString(), cpu: cpus()[0]?.model ?? 'unknown', cores, node: process.version, pinned: pin.length > 0 }
  writeFileSync(join(resultsDir, 'storm.json'), JSON.stringify({ results, meta }, null, 2) + '\n')
  writeFileSync(join(resultsDir, 'storm.md'), stormTable(results, meta) + '\n')
  writeFileSync(join(resultsDir, 'storm.svg'), stormChart(results))
  return results
}

const SCENARIO_LABELS: Record<StormScenario, string> = {
  restart: 'stop and start (empty)',
  'restart-history-dir': 'stop and start, `--history-dir`',
  'workers-sigusr2': '`--workers 2 --redis`, SIGUSR2'
}

/** ` (6.10–10.29 s of 3 runs)` after the median, with several runs. */
function range (result: StormResult): string {
  const runs = result.all_back_runs_ms
  if (runs === undefined || runs.length < 2) return ''
  const times = runs.filter((ms): ms is number => ms !== null)
  const timedOut = runs.length - times.length
  const span = times.length === 0 ? '' : `${(Math.min(...times) / 1000).toFixed(2)}–${(Math.max(...times) / 1000).toFixed(2)} s`
  return ` (${span}${timedOut > 0 ? `${span === '' ? '' : ', '}${timedOut} not back` : ''} in ${runs.length} runs)`
}

export function stormTable (results: StormResult[], meta: { date: string, cores: number, cpu: string, node: string }): string {
  const first = results[0]
  const runs = first?.all_back_runs_ms?.length ?? 1
  const head = first === undefined
    ? ''
    : `Measured ${meta.date.slice(0, 10)} on ${meta.cores} cores (${meta.cpu}), Node ${meta.node}: ${first.members} members (MlesClient, default reconnect backoff and jitter) on ${first.channels} channels of ${first.history} frames (\`npm run bench -- --storm\`)${runs > 1 ? `; each row is the median of ${runs} runs by the time until all were back, with the range` : ''}.\n\n`
  return head + '| server goes away by | all back | server serving again (stop + start) | back | failures | retries | give-ups | short replays | peak server RSS | server CPU | members process CPU | target (all back ≤ 10 s, no failure, no give-up) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n' +
    results.map((r) => `| ${SCENARIO_LABELS[r.scenario]} | ${r.all_back_ms === null ? 'not within the timeout' : `${(r.all_back_ms / 1000).toFixed(2)} s`}${range(r)} | ${r.server_back_ms === null ? '—' : `${(r.server_back_ms / 1000).toFixed(2)} s (${((r.stop_ms ?? 0) / 1000).toFixed(2)} + ${((r.start_ms ?? 0) / 1000).toFixed(2)})`} | ${r.back} of ${r.members} | ${r.failures} | ${r.retries} | ${r.give_ups} | ${r.short_replays} | ${r.peak_rss_mb.toFixed(0)} MB | ${r.server_cpu_s.toFixed(1)} s | ${r.members_cpu_pct.toFixed(0)} % | ${r.met ? 'met' : 'missed'} |`).join('\n')
}

/** Time until all were back, per scenario, against the 10 s target (a dashed line); a run that timed out is drawn to the timeout, red. */
export function stormChart (results: StormResult[]): string {
  const width = 640
  const labelWidth = 230
  const barHeight = 22
  const longest = Math.max(TARGET_MS * 1.2, ...results.map((r) => r.all_back_ms ?? 0))
  const scale = (ms: number): number => (width - labelWidth - 80) * ms / longest
  const parts: string[] = [`<text x="10" y="24" font-weight="bold">W8 reconnect storm: all ${results[0]?.members ?? 0} members back, with their replay — seconds (lower is better)</text>`]
  let y = 40
  for (const result of results) {
    const ms = result.all_back_ms ?? longest
    const label = SCENARIO_LABELS[result.scenario].replace(/`/g, '')
    parts.push(`<text x="10" y="${y + 15}">${label.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>`)
    parts.push(`<rect x="${labelWidth}" y="${y}" width="${scale(ms).toFixed(1)}" height="${barHeight - 6}" fill="${result.met ? '#2b7a3d' : result.all_back_ms === null ? '#c0392b' : '#e67e22'}"/>`)
    parts.push(`<text x="${(labelWidth + scale(ms) + 6).toFixed(1)}" y="${y + 15}">${result.all_back_ms === null ? 'not back' : (ms / 1000).toFixed(1) + ' s'}</text>`)
    y += barHeight
  }
  const target = labelWidth + scale(TARGET_MS)
  parts.push(`<line x1="${target.toFixed(1)}" y1="34" x2="${target.toFixed(1)}" y2="${y}" stroke="#333" stroke-dasharray="4 3"/>`)
  parts.push(`<text x="${(target + 4).toFixed(1)}" y="${y + 14}">target 10 s</text>`)
  y += 24
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`
}
