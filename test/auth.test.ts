import { test } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeAuth, verifyAuth } from '../src/auth.js'
import { computeAuth } from '../src/protocol/siphash.js'

test('normalizeAuth reads hex as the reference does', () => {
  assert.equal(normalizeAuth('00000000000000ab'), '00000000000000ab')
  assert.equal(normalizeAuth('AB'), '00000000000000ab')
  assert.equal(normalizeAuth('+ab'), '00000000000000ab')
  assert.equal(normalizeAuth('0000000000000000000000ab'), '00000000000000ab')
  assert.equal(normalizeAuth('ffffffffffffffff'), 'ffffffffffffffff')
  // unparsable or over 64 bits counts as 0
  for (const bad of ['', '+', 'xyz', '1ffffffffffffffff', ' ab', 'ab ', '0x12', '-1']) {
    assert.equal(normalizeAuth(bad), '0000000000000000', bad)
  }
})

test('verifyAuth with a server key requires the keyed hash', () => {
  const good = computeAuth('u', 'c', 'k')
  assert.equal(verifyAuth('u', 'c', good, 'k'), true)
  assert.equal(verifyAuth('u', 'c', good.toUpperCase(), 'k'), true)
  assert.equal(verifyAuth('u', 'c', undefined, 'k'), false)
  assert.equal(verifyAuth('u', 'c', computeAuth('u', 'c'), 'k'), false)
  assert.equal(verifyAuth('u', 'c', computeAuth('u', 'c', 'other'), 'k'), false)
  assert.equal(verifyAuth('v', 'c', good, 'k'), false)
})

test('verifyAuth without a server key: auth optional, checked when present', () => {
  assert.equal(verifyAuth('u', 'c', undefined, undefined), true)
  assert.equal(verifyAuth('u', 'c', computeAuth('u', 'c'), undefined), true)
  assert.equal(verifyAuth('u', 'c', computeAuth('u', 'c', 'k'), undefined), false)
  assert.equal(verifyAuth('u', 'c', 'nonsense', undefined), false)
})
