// `npm run bench -- --storm` (bench/storm.ts), kept from rotting: a small storm through each scenario, and its table.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))

test('bench smoke: --storm (W8) brings every member back, with its replay, after each way the server goes away', { timeout: 180_000 }, async () => {
  const { runStorm, STORM_SCENARIOS } = await import('../../bench/storm.js')
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const resultsDir = mkdtempSync(join(tmpdir(), 'mles-storm-results-'))
  try {
    const results = await runStorm({ projectRoot: root, members: 40, channels: 4, history: 20, scenarios: STORM_SCENARIOS, resultsDir, quiet: true, timeoutMs: 30_000 })
    assert.deepEqual(results.map((result) => result.scenario), ['restart', 'restart-history-dir', 'workers-sigusr2'])
    for (const result of results) {
      assert.ok(result.all_back_ms !== null && result.all_back_ms > 0, `${result.scenario}: ${JSON.stringify(result)}`)
      assert.equal(result.back, 40, result.scenario)
      assert.equal(result.give_ups, 0, result.scenario)
      assert.equal(result.short_replays, 0, `${result.scenario}: every member's replay again has the 20 frames`)
      assert.ok(result.peak_rss_mb > 10, result.scenario)
    }
    assert.match(readFileSync(join(resultsDir, 'storm.md'), 'utf8'), /\| `--workers 2 --redis`, SIGUSR2 \| \d+\.\d\d s \|/)
    assert.match(readFileSync(join(resultsDir, 'storm.svg'), 'utf8'), /<svg[^]*--workers 2 --redis, SIGUSR2[^]*target 10 s/)
  } finally {
    rmSync(resultsDir, { recursive: true, force: true })
  }
})

test('bench --storm table: with several runs, the median run and the range of all of them', async () => {
  const { stormTable } = await import('../../bench/storm.js')
  const row = { scenario: 'restart' as const, members: 10, channels: 2, history: 5, all_back_ms: 7630, server_back_ms: 1680, stop_ms: 1200, start_ms: 480, back: 10, failures: 0, retries: 1, give_ups: 0, short_replays: 0, peak_rss_mb: 100, server_cpu_s: 1, members_cpu_pct: 50, met: true }
  const meta = { date: '2026-12-04T00:00:00Z', cores: 2, cpu: 'x', node: 'v20' }
  const three = stormTable([{ ...row, all_back_runs_ms: [10_290, 6100, 7630] }], meta)
  assert.match(three, /median of 3 runs/)
  assert.match(three, /\| stop and start \(empty\) \| 7\.63 s \(6\.10–10\.29 s in 3 runs\) \|/)
  assert.match(stormTable([{ ...row, all_back_runs_ms: [7630, null, 5000] }], meta), /7\.63 s \(5\.00–7\.63 s, 1 not back in 3 runs\)/)
  assert.doesNotMatch(stormTable([row], meta), /runs/)
})
