// `npm run bench -- --startup` (bench/startup.ts), kept from rotting: one round of packing, installing and measuring.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))

test('bench smoke: --startup packs, installs and measures both apps', async () => {
  const { runStartup } = await import('../../bench/startup.js')
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const resultsDir = mkdtempSync(join(tmpdir(), 'mles-startup-results-'))
  try {
    runStartup({ projectRoot: root, runs: 1, readme: false, resultsDir })
    const saved = JSON.parse(readFileSync(join(resultsDir, 'startup.json'), 'utf8')) as { summary: Array<{ app: string, startMs: number, rssMb: number }>, added: Record<string, number> }
    assert.deepEqual(saved.summary.map((row) => row.app), ['fastify + @fastify/websocket', 'fastify + fastify-mles'])
    for (const row of saved.summary) assert.ok(row.startMs > 0 && row.rssMb > 10, JSON.stringify(row))
    for (const value of Object.values(saved.added)) assert.ok(Number.isFinite(value))
    assert.match(readFileSync(join(resultsDir, 'startup.md'), 'utf8'), /\| \*\*added by the plugin\*\* \|/)
  } finally {
    rmSync(resultsDir, { recursive: true, force: true })
  }
})
