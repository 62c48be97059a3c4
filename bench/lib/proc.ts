import type { ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICK_US = 10_000

/** Child processes of `pid` (all its threads' children). */
function childrenOf (pid: number): number[] {
  const children: number[] = []
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const listed = readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1').trim()
      if (listed !== '') children.push(...listed.split(' ').map(Number))
    }
  } catch {}
  return children
}

/** User + system CPU time of a process and of each of its live descendants, by pid, in microseconds (each process's own, not summed). */
export function cpuMicrosByProcess (pid: number, into = new Map<number, number>()): Map<number, number> {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return into
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  into.set(pid, (Number(fields[11]) + Number(fields[12])) * TICK_US)
  for (const child of childrenOf(pid)) cpuMicrosByProcess(child, into)
  return into
}

/** User + system CPU time of a process (all its threads) and its live descendants (workers), in microseconds. */
export function cpuMicros (pid: number): number {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return 0
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  let total = (Number(fields[11]) + Number(fields[12])) * TICK_US
  for (const child of childrenOf(pid)) total += cpuMicros(child)
  return total
}

/** Resident set size of a process and its live descendants, in KiB. */
export function rssKiB (pid: number): number {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1')
  } catch {
    return 0
  }
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  let total = match === null ? 0 : Number(match[1])
  for (const child of childrenOf(pid)) total += rssKiB(child)
  return total
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Asks a Node benchmark server to collect garbage (SIGUSR2, see servers/common.ts), then lets it settle. */
export async function collectGarbage (pid: number, isNode: boolean): Promise<void> {
  if (isNode) {
    process.kill(pid, 'SIGUSR2')
    await sleep(300)
    process.kill(pid, 'SIGUSR2')
  }
  await sleep(300)
}

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process has exited. */
export async function stopChild (child: ChildProcess, killAfterMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  await exited
  clearTimeout(timer)
}

/** `make(0 … count - 1)`, at most `concurrency` at a time; the results in index order. */
export async function inBatches<T> (count: number, concurrency: number, make: (index: number) => Promise<T>): Promise<T[]> {
  const made: T[] = new Array(count)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++
      made[index] = await make(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return made
}
