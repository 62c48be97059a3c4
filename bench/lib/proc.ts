import { readFileSync } from 'node:fs'

/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICK_US = 10_000

/** User + system CPU time of a process (all its threads), in microseconds. */
export function cpuMicros (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) * TICK_US
}

/** Resident set size of a process, in KiB. */
export function rssKiB (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? 0 : Number(match[1])
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
