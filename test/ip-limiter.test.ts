import { test } from 'node:test'
import assert from 'node:assert/strict'
import { addressKey } from '../src/ip-limiter.js'

test('addressKey: IPv4 as it is, IPv4-mapped as IPv4, IPv6 by its network', () => {
  assert.equal(addressKey('192.0.2.1', 64), '192.0.2.1')
  assert.equal(addressKey('::ffff:192.0.2.1', 64), '192.0.2.1')
  assert.equal(addressKey('::ffff:c000:201', 64), '192.0.2.1', 'the hex form of a mapped address too')
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:DB8:1:2::ffff', 64), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 48), '2001:db8:1::/48')
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 56), '2001:db8:1::/56')
  assert.equal(addressKey('2001:db8:1:2ff:3:4:5:6', 56), '2001:db8:1:200::/56')
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 128), '2001:db8:1:2:3:4:5:6')
  assert.equal(addressKey('::1', 64), '::/64')
  assert.equal(addressKey('fe80::1%eth0', 64), 'fe80::/64')
  assert.equal(addressKey('not an address', 64), 'not an address', 'what is not an address is its own key')
  assert.equal(addressKey('', 64), '')
})
