import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { HistoryRing } from '../../src/history/ring.js'
import { encodeFrame, framePayload, isBinaryFrame } from '../../src/protocol/frame.js'

const payloads = (ring: HistoryRing): string[] => Array.from({ length: ring.size }, (_, i) => framePayload(ring.at(i)).toString())
const runs = (ring: HistoryRing): Buffer[] => {
  const list: Buffer[] = []
  ring.forEachRun((run) => { list.push(run) })
  return list
}

test('append encodes the frame and returns its wire bytes', () => {
  const ring = new HistoryRing(10, 1000)
  const text = ring.append(Buffer.from('hello'), false)
  assert.ok(text.equals(encodeFrame(Buffer.from('hello'), false)))
  const binary = ring.append(Buffer.from([1, 2]), true)
  assert.ok(isBinaryFrame(binary))
  assert.ok(isBinaryFrame(ring.at(1)) && !isBinaryFrame(ring.at(0)))
})

test('keeps the last `limit` frames, oldest first', () => {
  const ring = new HistoryRing(3, 1000)
  for (const label of ['a', 'b', 'c', 'd', 'e']) ring.append(Buffer.from(label), false)
  assert.deepEqual(payloads(ring), ['c', 'd', 'e'])
  assert.equal(ring.bytes, 3 * 3, 'wire bytes: 2-byte header + 1-byte payload')
})

test('evicts the oldest to stay within the byte budget; a frame over the whole budget is sent but not kept', () => {
  const ring = new HistoryRing(100, 12)
  for (const label of ['a', 'b', 'c']) ring.append(Buffer.from(label.repeat(4)), false)
  assert.deepEqual(payloads(ring), ['bbbb', 'cccc'])
  assert.equal(ring.bytes, 12)
  const big = ring.append(Buffer.from('x'.repeat(11)), false)
  assert.equal(framePayload(big).toString(), 'x'.repeat(11))
  assert.deepEqual(payloads(ring), ['bbbb', 'cccc'])
})

test('limit 0 keeps nothing', () => {
  const ring = new HistoryRing(0, 1000)
  assert.equal(framePayload(ring.append(Buffer.from('a'), false)).toString(), 'a')
  assert.equal(ring.size, 0)
  assert.deepEqual(runs(ring), [])
})

test('a replay is a few contiguous runs, not one write per frame', () => {
  const ring = new HistoryRing(200, 10 * 1024 * 1024)
  for (let i = 0; i < 1000; i++) ring.append(Buffer.alloc(64, i % 256), true)
  const list = runs(ring)
  assert.ok(list.length <= 3, `${list.length} runs`)
  assert.equal(Buffer.concat(list).length, ring.bytes)
})

test('matches a simple model under random appends; handed-out wire bytes never change', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: 3, max: 2000 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 700 }), fc.boolean()), { maxLength: 300 }),
    (limit, maxBytes, frames) => {
      const ring = new HistoryRing(limit, maxBytes)
      let model: Buffer[] = []
      const handedOut: Array<[Buffer, Buffer]> = []
      frames.forEach(([size, binary], i) => {
        const payload = Buffer.alloc(size, i % 251)
        const wire = ring.append(payload, binary)
        const expected = encodeFrame(payload, binary)
        assert.ok(wire.equals(expected))
        handedOut.push([wire, expected])
        if (expected.length > maxBytes) return
        model.push(expected)
        while (model.length > limit || model.reduce((sum, b) => sum + b.length, 0) > maxBytes) model = model.slice(1)
      })
      assert.equal(ring.size, model.length)
      assert.deepEqual(Array.from({ length: ring.size }, (_, i) => ring.at(i).toString('hex')), model.map((b) => b.toString('hex')))
      assert.ok(Buffer.concat(runs(ring)).equals(Buffer.concat(model)))
      assert.equal(ring.bytes, model.reduce((sum, b) => sum + b.length, 0))
      for (const [wire, expected] of handedOut) assert.ok(wire.equals(expected), 'a view handed out earlier was overwritten')
    }), { numRuns: 500 })
})
