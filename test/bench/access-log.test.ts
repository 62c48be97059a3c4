// `npm run bench -- --access-log` (bench/access-log.ts), kept from rotting: one small round of each variant.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))

test('bench smoke: --access-log runs W4 against mles with request lines at debug and at info, and counts the lines', async () => {
  const { runAccessLogBench, accessLogTable } = await import('../../bench/access-log.js')
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const resultsDir = mkdtempSync(join(tmpdir(), 'mles-access-log-results-'))
  try {
    const results = await runAccessLogBench({
      projectRoot: root,
      joiners: 200,
      runs: 1,
      generators: 1,
      serverPin: [],
      generatorCores: [],
      generatorCommand: [process.execPath, '--import', 'tsx', join(root, 'bench', 'generator.ts')],
      quiet: true
    })
    assert.deepEqual(results.map((result) => result.variant), ['default', 'access-log'])
    for (const result of results) assert.ok(result.joins_per_s[0] > 0 && result.server_us_per_join[0] > 0, JSON.stringify(result))
    assert.equal(results[0].log_lines_per_join[0], 0, 'no line per join by default')
    assert.ok(results[1].log_lines_per_join[0] >= 1, 'a line per join with --access-log')
    const table = accessLogTable(results, { date: 'd', cores: 2, cpu: 'x', node: 'v20', joiners: 200, generators: 1 }, resultsDir)
    assert.match(table, /\| `mles --access-log` \(request lines at info\) \| \d+ \(\d+–\d+\) \| \d\.\d\d× \|/)
    assert.match(readFileSync(join(resultsDir, 'access-log.md'), 'utf8'), /log lines per join/)
  } finally {
    rmSync(resultsDir, { recursive: true, force: true })
  }
})
