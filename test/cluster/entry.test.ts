import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { decodeEntry, encodeEntry, parseStreamPack, StreamId } from '../../src/cluster/entry.js'

test('property: an entry decodes to what was encoded, flags included; anything shorter than a header is none', () => {
  fc.assert(fc.property(
    fc.string({ minLength: 1, maxLength: 40, unit: fc.constantFrom(...'0123456789abcdef-') }),
    fc.nat({ max: 2 ** 52 }),
    fc.option(fc.string({ unit: 'grapheme', maxLength: 20 })),
    fc.boolean(), fc.boolean(), fc.boolean(),
    fc.uint8Array({ maxLength: 200 }),
    (origin, sequence, uid, join, isBinary, restored, payload) => {
      const decoded = decodeEntry(encodeEntry(Buffer.from(origin, 'latin1'), sequence, uid, join, isBinary, payload, restored))
      assert.deepEqual(decoded, { origin, sequence, uid, join, isBinary, restored, payload: Buffer.from(payload) })
    }
  ), { numRuns: 500, seed: 3 })
  for (const length of [0, 1, 11]) assert.equal(decodeEntry(Buffer.alloc(length)), null)
  assert.equal(decodeEntry(encodeEntry(Buffer.from('node'), 1, 'u', false, false, Buffer.from('x')))?.restored, false, 'restored is off unless asked')
})

test('stream ids compare as numbers', () => {
  const a = StreamId.parse('1700000000000-9')
  const b = StreamId.parse('1700000000000-10')
  assert.ok(a !== null && b !== null)
  assert.ok(b.isAfter(a) && !a.isAfter(b) && !a.isAfter(a))
  assert.equal(StreamId.parse('not-an-id'), null)
})

test('parseStreamPack reads the packed entries of the bus scripts, values with spaces and any bytes untouched, and stops at a malformed part', () => {
  const value = Buffer.from([0x20, 0x31, 0x00, 0xff, 0x20, 0x0a])
  const packed = Buffer.concat([
    Buffer.from('1700000000000-0 6 '), value,
    Buffer.from('1700000000001-12 0 '),
    Buffer.from('1700000000002-3 3 '), Buffer.from('a b')
  ])
  const seen: Array<[string, string]> = []
  parseStreamPack(packed, (id, body) => { seen.push([id.toString(), body.toString('hex')]) })
  assert.deepEqual(seen, [['1700000000000-0', value.toString('hex')], ['1700000000001-12', ''], ['1700000000002-3', Buffer.from('a b').toString('hex')]])
  for (const bad of ['1-0 5 abc', '1-0 x abc', 'nonsense', '1-0 ', 'x-y 1 a']) {
    const got: string[] = []
    parseStreamPack(Buffer.from(bad), (id) => { got.push(id.toString()) })
    assert.deepEqual(got, [], bad)
  }
  const got: string[] = []
  parseStreamPack(Buffer.from('1-0 1 a2-0 9 short'), (id) => { got.push(id.toString()) })
  assert.deepEqual(got, ['1-0'], 'the entries before the malformed part')
})
