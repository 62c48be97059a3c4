import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { computeAuth, sipHash24Hex } from '../../src/protocol/siphash.js'

// An independent SipHash-2-4 from the paper, on BigInt, to check the library against.
function referenceSipHash (key: Uint8Array, message: Uint8Array): bigint {
  const mask = (1n << 64n) - 1n
  const rotl = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & mask
  const word = (bytes: Uint8Array, at: number): bigint => {
    let value = 0n
    for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] ?? 0)
    return value
  }
  const k0 = word(key, 0)
  const k1 = word(key, 8)
  let v0 = k0 ^ 0x736f6d6570736575n
  let v1 = k1 ^ 0x646f72616e646f6dn
  let v2 = k0 ^ 0x6c7967656e657261n
  let v3 = k1 ^ 0x7465646279746573n
  const round = (): void => {
    v0 = (v0 + v1) & mask; v1 = rotl(v1, 13n); v1 ^= v0; v0 = rotl(v0, 32n)
    v2 = (v2 + v3) & mask; v3 = rotl(v3, 16n); v3 ^= v2
    v0 = (v0 + v3) & mask; v3 = rotl(v3, 21n); v3 ^= v0
    v2 = (v2 + v1) & mask; v1 = rotl(v1, 17n); v1 ^= v2; v2 = rotl(v2, 32n)
  }
  const full = message.length - (message.length % 8)
  for (let at = 0; at < full; at += 8) {
    const m = word(message, at)
    v3 ^= m; round(); round(); v0 ^= m
  }
  const last = new Uint8Array(8)
  last.set(message.subarray(full))
  last[7] = message.length & 0xff
  const m = word(last, 0)
  v3 ^= m; round(); round(); v0 ^= m
  v2 ^= 0xffn
  round(); round(); round(); round()
  return v0 ^ v1 ^ v2 ^ v3
}

const keyOf = (bytes: Uint8Array): Uint32Array => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16)
  return new Uint32Array([0, 4, 8, 12].map((at) => view.getUint32(at, true)))
}

test('SipHash-2-4 gives the paper test vector', () => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i)
  const message = Uint8Array.from({ length: 15 }, (_, i) => i)
  assert.equal(sipHash24Hex(message, keyOf(key)), 'a129ca6149be45e5')
  assert.equal(referenceSipHash(key, message), 0xa129ca6149be45e5n)
})

test('SipHash-2-4 agrees with the reference algorithm on random keys and messages', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ maxLength: 300 }), (key, message) => {
    assert.equal(sipHash24Hex(message, keyOf(key)), referenceSipHash(key, message).toString(16).padStart(16, '0'))
  }), { numRuns: 300 })
})

test('computeAuth hashes uid ‖ channel ‖ key with a zero key, as 16 lowercase hex digits', () => {
  const zero = new Uint8Array(16)
  const expected = (text: string): string => referenceSipHash(zero, new TextEncoder().encode(text)).toString(16).padStart(16, '0')
  assert.equal(computeAuth('alice', 'lobby'), expected('alicelobby'))
  assert.equal(computeAuth('alice', 'lobby', 'secret'), expected('alicelobbysecret'))
  assert.match(computeAuth('u', 'c', 'k'), /^[0-9a-f]{16}$/)
  assert.notEqual(computeAuth('alice', 'lobby', 'a'), computeAuth('alice', 'lobby', 'b'))
})
