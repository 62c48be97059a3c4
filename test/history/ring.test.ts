import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { HistoryRing } from '../../src/history/ring.js'

const frame = (label: string, size = label.length): Buffer => Buffer.from(label.padEnd(size, '.'))
const contents = (ring: HistoryRing): string[] => Array.from({ length: ring.size }, (_, i) => ring.at(i).toString())

test('keeps the last `limit` frames, oldest first', () => {
  const ring = new HistoryRing(3, 1000)
  for (const label of ['a', 'b', 'c', 'd', 'e']) ring.push(frame(label))
  assert.deepEqual(contents(ring), ['c', 'd', 'e'])
  assert.equal(ring.bytes, 3)
})

test('evicts the oldest to stay within the byte budget', () => {
  const ring = new HistoryRing(100, 10)
  ring.push(frame('a', 4))
  ring.push(frame('b', 4))
  ring.push(frame('c', 4))
  assert.deepEqual(contents(ring), ['b...', 'c...'])
  assert.equal(ring.bytes, 8)
  ring.push(frame('big', 11))
  assert.deepEqual(contents(ring), ['b...', 'c...'], 'a frame over the whole budget is not kept')
})

test('limit 0 keeps nothing', () => {
  const ring = new HistoryRing(0, 1000)
  ring.push(frame('a'))
  assert.equal(ring.size, 0)
})

test('matches a simple model under random pushes', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 200 }), fc.array(fc.integer({ min: 1, max: 30 }), { maxLength: 300 }),
    (limit, maxBytes, sizes) => {
      const ring = new HistoryRing(limit, maxBytes)
      let model: Buffer[] = []
      sizes.forEach((size, i) => {
        const wire = frame(String(i), size)
        ring.push(wire)
        if (size > maxBytes) return
        model.push(wire)
        while (model.length > limit || model.reduce((sum, b) => sum + b.length, 0) > maxBytes) model = model.slice(1)
      })
      assert.deepEqual(contents(ring), model.map(String))
      assert.equal(ring.bytes, model.reduce((sum, b) => sum + b.length, 0))
    }), { numRuns: 500 })
})
