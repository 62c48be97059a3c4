// W4's coordinator: several generator processes share one join storm (see
// joinStorm in bench/generator.ts for their side of the exchange).
import { spawn, type ChildProcess } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import type { Job, Measurement } from '../generator.js'
import { cpuMicros, sleep } from './proc.js'

/** One generator process of W4, driven line by line (READY, GO, DONE, END, RESULT: see joinStorm in generator.ts). */
class JoinGenerator {
  private readonly child: ChildProcess
  private output = ''
  private readonly waiting: Array<{ line: RegExp, resolve: (match: RegExpExecArray) => void }> = []
  readonly exited: Promise<number | null>

  constructor (job: Job, command: string[]) {
    command = [...command, JSON.stringify(job)]
    this.child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => { resolve(code) }))
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString()
      for (let i = this.waiting.length - 1; i >= 0; i--) {
        const match = this.waiting[i].line.exec(this.output)
        if (match !== null) { this.waiting[i].resolve(match); this.waiting.splice(i, 1) }
      }
    })
  }

  /** Resolves with the first output line matching `line`; rejects if the process exits first. */
  async expect (line: RegExp): Promise<RegExpExecArray> {
    const seen = line.exec(this.output)
    if (seen !== null) return seen
    return await Promise.race([
      new Promise<RegExpExecArray>((resolve) => { this.waiting.push({ line, resolve }) }),
      this.exited.then((code) => { throw new Error(`W4 generator exited with ${code} before ${line.source}`) })
    ])
  }

  tell (command: string): void {
    this.child.stdin?.write(command + '\n')
  }

  kill (): void {
    this.child.kill('SIGKILL')
  }
}

export interface JoinStormSetup {
  /** Generator processes sharing the joiners. */
  parts: number
  /** Cores to pin them to (taskset), round-robin; none: not pinned. */
  cores: string[]
  /** How to start bench/generator (the job goes after it as the last argument). */
  command: string[]
}

/**
 * W4 with `parts` generator processes sharing the joiners. The joins/s run
 * from the first start to the last joiner with its full replay, on any
 * generator; the server's CPU from GO to the last DONE gives server µs per
 * join, a figure that holds even when the generators are the limit.
 */
export async function joinStorm (job: Job, setup: JoinStormSetup): Promise<Measurement> {
  const generatorCores = setup.cores
  const generators = Array.from({ length: setup.parts }, (_, part) =>
    new JoinGenerator({ ...job, part, parts: setup.parts }, [...(generatorCores.length === 0 ? [] : ['taskset', '-c', generatorCores[part % generatorCores.length]]), ...setup.command]))
  const timer = setTimeout(() => { for (const generator of generators) generator.kill() }, 120_000)
  try {
    await Promise.all(generators.map(async (generator) => await generator.expect(/^READY$/m)))
    const cpu0 = cpuMicros(job.serverPid)
    const go = performance.now()
    for (const generator of generators) generator.tell('GO')
    await Promise.all(generators.map(async (generator) => await generator.expect(/^DONE$/m)))
    const serverCpu = cpuMicros(job.serverPid) - cpu0
    const span = performance.now() - go
    await sleep(300)
    for (const generator of generators) generator.tell('END')
    const results = await Promise.all(generators.map(async (generator) => JSON.parse((await generator.expect(/^RESULT (.*)$/m))[1]) as Measurement))
    const codes = await Promise.all(generators.map(async (generator) => await generator.exited))
    if (codes.some((code) => code !== 0)) throw new Error(`a W4 generator failed (exits ${codes.join(', ')})`)
    const joiners = results.reduce((sum, r) => sum + r.joiners, 0)
    const exact = results.reduce((sum, r) => sum + r.exact, 0)
    const allFinished = results.every((r) => r.finish_ms > 0 || r.joiners === 0)
    const first = Math.min(...results.map((r) => r.start_ms))
    const last = Math.max(...results.map((r) => r.finish_ms))
    // What can saturate is a core: the generators sharing one are summed.
    const perCore = new Map<string, number>()
    results.forEach((r, part) => {
      const core = generatorCores[part % Math.max(1, generatorCores.length)] ?? 'any'
      perCore.set(core, (perCore.get(core) ?? 0) + r.generator_cpu_pct)
    })
    const measurement: Measurement = {
      joins_per_s: allFinished ? joiners / ((last - first) / 1000) : 0,
      replay_completeness: exact / joiners,
      server_us_per_join: serverCpu / joiners,
      server_cpu_pct: 100 * serverCpu / (span * 1000),
      generators: generators.length,
      generator_cpu_pct: Math.max(...perCore.values())
    }
    results.forEach((r, part) => { measurement[`generator_${part + 1}_cpu_pct`] = r.generator_cpu_pct })
    return measurement
  } finally {
    clearTimeout(timer)
    for (const generator of generators) generator.kill()
  }
}

