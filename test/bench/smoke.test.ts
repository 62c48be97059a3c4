import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { joinStorm } from '../../bench/lib/join-storm.js'

// Keeps `npm run bench` from rotting: a tiny run of each workload kind through
// the real generator and servers. Never asserts speed, only that the numbers exist.
const root = fileURLToPath(new URL('../../', import.meta.url))
const generatorScript = fileURLToPath(new URL('../../bench/generator.ts', import.meta.url))

async function startServer (system: string, env: Record<string, string> = {}): Promise<{ port: number, pid: number, stop: () => void }> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', `bench/servers/${system}.ts`], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const port = await new Promise<number>((resolve, reject) => {
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /READY (\d+)/.exec(output)
      if (match !== null) resolve(Number(match[1]))
    })
    child.on('exit', (code) => { reject(new Error(`${system} exited with ${code}`)) })
  })
  return { port, pid: child.pid as number, stop: () => { child.kill('SIGTERM') } }
}

async function generate (job: Record<string, unknown>): Promise<Record<string, number>> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/generator.ts', JSON.stringify(job)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  assert.equal(code, 0)
  const line = /RESULT (.*)/.exec(output)
  assert.ok(line !== null, output)
  return JSON.parse(line[1]) as Record<string, number>
}

for (const system of ['fastify-mles', 'ws-basic', 'ws-ceiling', 'socket.io']) {
  test(`bench smoke: ${system}`, async () => {
    const jobs: Array<[Record<string, unknown>, string[]]> = [
      [{ workload: 'W1', n: 20, size: 64, mode: 'sat', warmupMs: 100, durationMs: 300 }, ['deliveries_per_s', 'server_us_per_delivery', 'p50_ms', 'p99_ms', 'generator_cpu_pct']],
      [{ workload: 'W2', pairs: 20, warmupMs: 100, durationMs: 300 }, ['round_trips_per_s', 'p99_ms', 'generator_cpu_pct']],
      [{ workload: 'W3', connections: 200, channels: 20, warmupMs: 0, durationMs: 0 }, ['rss_mb_idle', 'generator_cpu_pct']]
    ]
    if (system !== 'socket.io') jobs.push([{ workload: 'W4', joiners: 31, history: 200, warmupMs: 0, durationMs: 0 }, ['joins_per_s', 'replay_completeness', 'server_us_per_join', 'generator_cpu_pct', 'generator_1_cpu_pct', 'generator_2_cpu_pct']])
    for (const [job, fields] of jobs) {
      const server = await startServer(system)
      try {
        const full = { ...job, system, port: server.port, serverPid: server.pid, serverIsNode: true }
        // W4 shares its joiners among two generator processes, as the bench runs it.
        const result = job.workload === 'W4'
          ? await joinStorm(full as Parameters<typeof joinStorm>[0], { parts: 2, cores: [], command: [process.execPath, '--import', 'tsx', generatorScript] })
          : await generate(full)
        for (const field of fields) assert.ok(Number.isFinite(result[field]) && result[field] > 0, `${system} ${String(job.workload)} ${field} = ${result[field]}`)
        if (job.workload === 'W4') {
          assert.equal(result.replay_completeness, 1)
          assert.equal(result.generators, 2)
        }
      } finally {
        server.stop()
      }
    }
  })
}

test('bench smoke: W6 over TLS — the mles command with its own certificate, the ws ceiling over https', async () => {
  const { benchCertificate, startMlesTls } = await import('../../bench/lib/peers.js')
  const tls = benchCertificate()
  assert.ok(tls !== null, 'openssl made a certificate')
  const job = { workload: 'W6', n: 20, size: 64, mode: 'sat', warmupMs: 100, durationMs: 300 }
  const ceiling = await startServer('ws-ceiling', { MLES_BENCH_TLS_CERT: tls.cert, MLES_BENCH_TLS_KEY: tls.key })
  try {
    const result = await generate({ ...job, system: 'ws-ceiling', port: ceiling.port, serverPid: ceiling.pid, serverIsNode: true })
    assert.ok(result.deliveries_per_s > 0 && result.server_us_per_delivery > 0, JSON.stringify(result))
  } finally {
    ceiling.stop()
  }
  const mles = await startMlesTls(fileURLToPath(new URL('../../dist/example-app/cli.js', import.meta.url)), [], tls)
  try {
    const result = await generate({ ...job, system: 'fastify-mles', port: mles.port, serverPid: mles.child.pid, serverIsNode: false })
    assert.ok(result.deliveries_per_s > 0 && result.server_us_per_delivery > 0, JSON.stringify(result))
  } finally {
    mles.child.kill('SIGTERM')
  }
})

test('bench tables: the generator\'s CPU is a column, and a row whose generator was saturated is marked, with a note', async () => {
  const { aggregate, table } = await import('../../bench/lib/report.js')
  const entry = (system: string, generator: number): Parameters<typeof table>[0][number] => ({
    system, workload: 'W2', params: { pairs: 10 }, runs: 1, round_trips_per_s: aggregate([1000]), generator_cpu_pct: aggregate([generator])
  })
  const calm = table([entry('fastify-mles', 40), entry('ws-basic', 60)])
  assert.match(calm, /generator CPU %/)
  assert.doesNotMatch(calm, /⚠/)
  const bound = table([entry('fastify-mles', 40), entry('ws-basic', 97)])
  assert.match(bound, /\| ws-basic ⚠ \|/)
  assert.doesNotMatch(bound, /\| fastify-mles ⚠/)
  assert.match(bound, /⚠ the load generator used 90 % or more of its core/)
  // W4's generators, each with its own column after the fixed ones.
  const storm = table([{ system: 'fastify-mles', workload: 'W4', params: { joiners: 10 }, runs: 1, joins_per_s: aggregate([500]), generator_cpu_pct: aggregate([70]), generators: aggregate([2]), generator_2_cpu_pct: aggregate([30]), generator_1_cpu_pct: aggregate([40]) }])
  assert.match(storm, /\| joins\/s \| generator CPU % \| generators \| generator 1 CPU % \| generator 2 CPU % \|/)
  assert.match(storm, /\| 500 \| 70 \| 2 \| 40 \| 30 \|/)
})
