// The load generator: one process per measurement, run on its own core. It
// connects the clients of one workload to one server, drives it for a bounded
// time, and prints one line `RESULT {json}`.
import { performance } from 'node:perf_hooks'
import * as hdr from 'hdr-histogram-js'
import { CONNECTORS, type BenchClient, type BenchHandlers, type SystemName } from './lib/clients.js'
import { collectGarbage, cpuMicros, inBatches, rssKiB, sleep } from './lib/proc.js'
import { useTls } from './lib/raw-ws.js'

export type Workload = 'W1' | 'W2' | 'W3' | 'W4' | 'W5' | 'W6'

export interface Job {
  workload: Workload
  system: SystemName
  port: number
  serverPid: number
  serverIsNode: boolean
  warmupMs: number
  durationMs: number
  /** W1/W5/W6: subscribers, payload bytes, saturation or fixed rate (messages/s); W6 is W1 over TLS. */
  n?: number
  size?: number
  mode?: 'sat' | 'rate'
  rate?: number
  /** W5: subscribers that never read. */
  slow?: number
  /** W2: ping-pong pairs. */
  pairs?: number
  /** W3: idle connections and the channels they spread over. */
  connections?: number
  channels?: number
  /** W3: idle time before the settled memory reading. */
  settleMs?: number
  /** W4: joiners (over all the generator processes) and the history they should each receive. */
  joiners?: number
  history?: number
  /** W4: this generator's index among `parts` processes sharing the joiners. */
  part?: number
  parts?: number
}

export type Measurement = Record<string, number>

const CONNECT_CONCURRENCY = 100
/** Messages a saturating publisher keeps in flight (not yet delivered to every subscriber). */
const WINDOW = 64

function histogram (): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 2 })
}

/** Latency of a payload stamped with `performance.now()` at offset 0, in µs. */
function latencyMicros (data: Buffer, start: number): number {
  return Math.max(1, Math.min(599_000_000, Math.round((performance.now() - data.readDoubleLE(start)) * 1000)))
}

async function connectMany (count: number, make: (index: number) => Promise<BenchClient>): Promise<BenchClient[]> {
  return await inBatches(count, CONNECT_CONCURRENCY, make)
}

const quiet: BenchHandlers = { onMessage: () => {} }

/**
 * How much of a core the generator itself used over `elapsedMs`: near 100 %,
 * the generator, not the server, set the pace (the tables mark such runs).
 */
function cpuPercent (used: NodeJS.CpuUsage, elapsedMs: number): number {
  return elapsedMs <= 0 ? 0 : 100 * (used.user + used.system) / (elapsedMs * 1000)
}

/** W1, W5 and W6: one publisher, `n` reading subscribers (and `slow` that never read), one channel. */
async function fanOut (job: Job): Promise<Measurement> {
  const connect = CONNECTORS[job.system]
  const n = job.n ?? 100
  const size = Math.max(8, job.size ?? 64)
  const latencies = histogram()
  let delivered = 0
  let measuring = false
  let tick = 0
  const onMessage = (data: Buffer, start: number): void => {
    delivered++
    if (measuring && (++tick & 7) === 0) latencies.recordValue(latencyMicros(data, start))
  }
  const readers = await connectMany(n, async (i) => await connect(job.port, `s${i}`, 'fan', { onMessage }))
  const slow = await connectMany(job.slow ?? 0, async (i) => await connect(job.port, `slow${i}`, 'fan', quiet))
  for (const client of slow) client.pause()
  const publisher = await connect(job.port, 'pub', 'fan', quiet)
  await sleep(300)

  const payload = Buffer.alloc(size)
  let sent = 0
  let running = true
  const publish = (): void => {
    payload.writeDoubleLE(performance.now(), 0)
    publisher.publish(payload)
    sent++
  }
  let timer: NodeJS.Timeout | undefined
  if (job.mode === 'rate') {
    const rate = job.rate ?? 1000
    const began = performance.now()
    timer = setInterval(() => {
      const due = Math.floor((performance.now() - began) * rate / 1000)
      // Never queue without bound if the system falls behind the rate.
      while (sent < due && sent - delivered / n < WINDOW * 100) publish()
    }, 1)
  } else {
    const pump = (): void => {
      if (!running) return
      let budget = WINDOW
      while (budget-- > 0 && sent - delivered / n < WINDOW) publish()
      setImmediate(pump)
    }
    pump()
  }

  await sleep(job.warmupMs)
  latencies.reset()
  measuring = true
  const rss: number[] = [rssKiB(job.serverPid)]
  const sampler = setInterval(() => { rss.push(rssKiB(job.serverPid)) }, 250)
  const delivered0 = delivered
  const cpu0 = cpuMicros(job.serverPid)
  const ownCpu0 = process.cpuUsage()
  const t0 = performance.now()
  await sleep(job.durationMs)
  const delivered1 = delivered
  const cpu1 = cpuMicros(job.serverPid)
  const ownCpu1 = process.cpuUsage(ownCpu0)
  const t1 = performance.now()
  measuring = false
  running = false
  clearInterval(timer)
  clearInterval(sampler)
  rss.push(rssKiB(job.serverPid))

  const deliveries = delivered1 - delivered0
  const seconds = (t1 - t0) / 1000
  for (const client of [...readers, ...slow, publisher]) client.close()
  const result: Measurement = {
    deliveries_per_s: deliveries / seconds,
    messages_per_s: deliveries / n / seconds,
    server_us_per_delivery: deliveries === 0 ? 0 : (cpu1 - cpu0) / deliveries,
    p50_ms: latencies.getValueAtPercentile(50) / 1000,
    p99_ms: latencies.getValueAtPercentile(99) / 1000,
    generator_cpu_pct: cpuPercent(ownCpu1, t1 - t0)
  }
  if (job.workload === 'W5') {
    result.rss_mb_start = rss[0] / 1024
    result.rss_mb_max = Math.max(...rss) / 1024
    result.rss_mb_end = rss[rss.length - 1] / 1024
  }
  return result
}

/** W2: `pairs` channels of two clients playing ping-pong, one ping in flight per pair. */
async function pingPong (job: Job): Promise<Measurement> {
  const connect = CONNECTORS[job.system]
  const pairs = job.pairs ?? 1000
  const rtts = histogram()
  let roundTrips = 0
  let measuring = false
  let running = true
  const pingers: BenchClient[] = []
  const clients = await connectMany(pairs, async (i) => {
    const payload = Buffer.alloc(64)
    const pinger = await connect(job.port, `a${i}`, `pair${i}`, {
      onMessage: (data, start) => {
        roundTrips++
        if (measuring) rtts.recordValue(latencyMicros(data, start))
        if (!running) return
        payload.writeDoubleLE(performance.now(), 0)
        pinger.publish(payload)
      }
    })
    pingers[i] = pinger
    await sleep(5) // the pinger's join lands first, so the ponger's join frame is not its first message
    let ponger: BenchClient | null = null
    ponger = await connect(job.port, `b${i}`, `pair${i}`, {
      onMessage: (data, start, end) => { ponger?.publish(data.subarray(start, end)) }
    })
    return ponger
  })
  await sleep(300)
  const ping = Buffer.alloc(64)
  for (const pinger of pingers) {
    ping.writeDoubleLE(performance.now(), 0)
    pinger.publish(ping)
  }
  await sleep(job.warmupMs)
  rtts.reset()
  measuring = true
  const count0 = roundTrips
  const cpu0 = cpuMicros(job.serverPid)
  const ownCpu0 = process.cpuUsage()
  const t0 = performance.now()
  await sleep(job.durationMs)
  const count1 = roundTrips
  const cpu1 = cpuMicros(job.serverPid)
  const ownCpu1 = process.cpuUsage(ownCpu0)
  const t1 = performance.now()
  running = false
  measuring = false
  for (const client of [...pingers, ...clients]) client.close()
  const trips = count1 - count0
  return {
    round_trips_per_s: trips / ((t1 - t0) / 1000),
    deliveries_per_s: 2 * trips / ((t1 - t0) / 1000),
    server_us_per_delivery: trips === 0 ? 0 : (cpu1 - cpu0) / (2 * trips),
    p50_ms: rtts.getValueAtPercentile(50) / 1000,
    p99_ms: rtts.getValueAtPercentile(99) / 1000,
    generator_cpu_pct: cpuPercent(ownCpu1, t1 - t0),
    server_cpu_pct: 100 * (cpu1 - cpu0) / ((t1 - t0) * 1000)
  }
}

/** W3: idle joined connections spread over channels; server memory per connection after GC. */
async function idle (job: Job): Promise<Measurement> {
  const connect = CONNECTORS[job.system]
  const connections = job.connections ?? 10_000
  const channels = job.channels ?? 1000
  await collectGarbage(job.serverPid, job.serverIsNode)
  const before = rssKiB(job.serverPid)
  const ownCpu0 = process.cpuUsage()
  const connecting = performance.now()
  const clients = await connectMany(connections, async (i) => await connect(job.port, `u${i}`, `idle${i % channels}`, quiet))
  // Over the connecting, the only busy part of W3.
  const generatorCpu = cpuPercent(process.cpuUsage(ownCpu0), performance.now() - connecting)
  await sleep(Math.min(1000, job.durationMs))
  await collectGarbage(job.serverPid, job.serverIsNode)
  const early = rssKiB(job.serverPid)
  // A Node server's young generation grows while connections pour in and is
  // given back only once the server has been idle for several seconds (V8's
  // memory reducer): that memory is transient, not per connection. The
  // settled figure is taken after `settleMs` of idleness and a GC.
  let settled = early
  if ((job.settleMs ?? 0) > 0) {
    await sleep(job.settleMs ?? 0)
    await collectGarbage(job.serverPid, job.serverIsNode)
    settled = rssKiB(job.serverPid)
  }
  for (const client of clients) client.close()
  return { kb_per_conn: (settled - before) / connections, kb_per_conn_at_1s: (early - before) / connections, rss_mb_idle: settled / 1024, generator_cpu_pct: generatorCpu }
}

/** Lines from the coordinator (bench/run.ts) on stdin: W4's generators start and stop together. */
const commands = (async function * (): AsyncGenerator<string> {
  let buffered = ''
  for await (const chunk of process.stdin) {
    buffered += String(chunk)
    let newline: number
    while ((newline = buffered.indexOf('\n')) !== -1) {
      yield buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
    }
  }
})()

async function awaitCommand (expected: string): Promise<void> {
  for (;;) {
    const next = await commands.next()
    if (next.done === true) throw new Error(`stdin closed while waiting for ${expected}`)
    if (next.value === expected) return
  }
}

/**
 * W4: `joiners` clients join at once a channel holding `history` frames; each
 * must get all of them. The joiners are shared among `parts` generator
 * processes (this one is `part`); part 0 first publishes the history. Each
 * says READY, joins its share on GO, says DONE once every one of its joiners
 * has its replay (or after 30 s), and reports on END, when all are done: the
 * coordinator takes the storm's time from the first start to the last finish
 * and the server's CPU from GO to the last DONE.
 */
async function joinStorm (job: Job): Promise<Measurement> {
  const connect = CONNECTORS[job.system]
  const part = job.part ?? 0
  const parts = job.parts ?? 1
  const total = job.joiners ?? 1000
  const expected = job.history ?? 200
  const mine = Array.from({ length: Math.ceil((total - part) / parts) }, (_, k) => part + k * parts)
  const publisher = part === 0 ? await connect(job.port, 'pub', 'storm', quiet) : null
  if (publisher !== null) {
    await sleep(200)
    const payload = Buffer.alloc(64)
    for (let i = 0; i < expected; i++) publisher.publish(payload)
    await sleep(500)
  }
  process.stdout.write('READY\n')
  await awaitCommand('GO')

  const counts = new Int32Array(mine.length)
  let complete = 0
  let finished = 0
  const ownCpu0 = process.cpuUsage()
  let ownCpu = ownCpu0
  const t0 = performance.now()
  let resolveDone: () => void = () => {}
  const done = new Promise<void>((resolve) => { resolveDone = resolve })
  const count = (index: number): void => {
    if (++counts[index] === expected && ++complete === mine.length) {
      finished = performance.now()
      ownCpu = process.cpuUsage(ownCpu0)
      resolveDone()
    }
  }
  if (mine.length === 0) resolveDone()
  let clients: BenchClient[] = []
  const connecting = connectMany(mine.length, async (k) => await connect(job.port, `j${mine[k]}`, 'storm', { onMessage: () => { count(k) }, onOther: () => { count(k) } }))
    .then((made) => { clients = made })
  await Promise.race([done, sleep(30_000)])
  process.stdout.write('DONE\n')
  // Until END (the others done, and a pause): anything extra shows up as over-delivery.
  await awaitCommand('END')
  await Promise.race([connecting, sleep(1000)])
  for (const client of [...clients, ...(publisher === null ? [] : [publisher])]) client.close()
  const exact = counts.reduce((sum, n) => sum + (n === expected ? 1 : 0), 0)
  const origin = performance.timeOrigin
  return {
    joiners: mine.length,
    exact,
    start_ms: origin + t0,
    finish_ms: finished === 0 ? 0 : origin + finished,
    generator_cpu_pct: finished === 0 ? 0 : cpuPercent(ownCpu, finished - t0)
  }
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job
useTls(job.workload === 'W6')
const run = { W1: fanOut, W2: pingPong, W3: idle, W4: joinStorm, W5: fanOut, W6: fanOut }[job.workload]
const result = await run(job)
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
process.exit(0)
