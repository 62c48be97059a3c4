import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { encodeFrame, readPrefix, rekeyFrame, V1FrameReader } from '../../src/v1/frame.js'
import { addressString, cidOfKey, keyStrings, v1Key } from '../../src/v1/key.js'
import { decodeMsg, decodeResync, encodeMsg, encodeResync } from '../../src/v1/msg.js'

// SPEC-v1 §10: uid "alice", channel "ch", message "hi".
const MSG_HEX = 'a36375696465616c696365676368616e6e656c626368676d657373616765426869'
const FRAME_10_1 = '4d000021d207833f65c1cfc8d207833f' + MSG_HEX
const FRAME_10_2 = '4d000021359963f54a11f5e9359963f5' + MSG_HEX
const JOIN_10_1 = '4d00001fd207833f65c1cfc8d207833f' + 'a36375696465616c696365676368616e6e656c626368676d65737361676540'
const RESYNC_HEX = 'a16e726573796e635f6d65737361676581a16b656e636f6465645f6d736758314d000021d207833f65c1cfc8d207833fa36375696465616c696365676368616e6e656c626368676d657373616765426869'

test('SPEC-v1 §3: Msg is encoded as serde_cbor writes it, and decodes back', () => {
  const msg = { uid: 'alice', channel: 'ch', message: Buffer.from('hi') }
  assert.equal(encodeMsg(msg).toString('hex'), MSG_HEX)
  assert.deepEqual(decodeMsg(Buffer.from(MSG_HEX, 'hex')), { uid: 'alice', channel: 'ch', message: Buffer.from('hi') })
  assert.equal(encodeMsg({ uid: 'alice', channel: 'ch', message: new Uint8Array(0) }).toString('hex').slice(-2), '40')
})

test('SPEC-v1 §5, §10: keys, CIDs and frames of the worked vectors', () => {
  const address = addressString('127.0.0.1', 12345)
  assert.equal(address, '127.0.0.1:12345')
  const key = v1Key(keyStrings({}, address, 'alice', 'ch'))
  assert.equal(key, '65c1cfc8d207833f')
  assert.equal(cidOfKey(key), 0xd207833f)
  assert.equal(encodeFrame(Buffer.from(MSG_HEX, 'hex'), cidOfKey(key), key).toString('hex'), FRAME_10_1)

  const shared = v1Key(keyStrings({ sharedKey: 'secret', addressKey: 'ignored' }, address, 'alice', 'ch'))
  assert.equal(shared, '4a11f5e9359963f5')
  assert.equal(encodeFrame(Buffer.from(MSG_HEX, 'hex'), cidOfKey(shared), shared).toString('hex'), FRAME_10_2)

  assert.equal(v1Key(keyStrings({ addressKey: 'extra' }, address, 'alice', 'ch')), 'ddc73ecb48640d96')
  assert.equal(v1Key(['[0:0:0:0:0:ffff:7f00:1]:12345', 'alice', 'ch']), '28712f5d7e7810fb')
  const join = encodeFrame(encodeMsg({ uid: 'alice', channel: 'ch', message: new Uint8Array(0) }), cidOfKey(key), key)
  assert.equal(join.toString('hex'), JOIN_10_1)
  assert.deepEqual(readPrefix(join), { length: 31, cid: 0xd207833f, key: '65c1cfc8d207833f' })
  assert.equal(rekeyFrame(join, cidOfKey(shared), shared).toString('hex').slice(8, 32), '359963f54a11f5e9359963f5')
})

test('SPEC-v1 §4: ResyncMsg of the 10.1 frame', () => {
  assert.equal(encodeResync([Buffer.from(FRAME_10_1, 'hex')]).toString('hex'), RESYNC_HEX)
  assert.deepEqual(decodeResync(Buffer.from(RESYNC_HEX, 'hex')), [Buffer.from(FRAME_10_1, 'hex')])
  assert.equal(decodeResync(Buffer.from(MSG_HEX, 'hex')), null)
  assert.equal(decodeResync(encodeResync([])), null)
})

test('SPEC-v1 §5: addresses as addr2str writes them; IPv4-mapped ones unmapped', () => {
  assert.equal(addressString('::ffff:127.0.0.1', 12345), '127.0.0.1:12345')
  assert.equal(addressString('::ffff:127.0.0.1', 12345, true), '[0:0:0:0:0:ffff:7f00:1]:12345')
  assert.equal(addressString('ff03::1', 8077), '[ff03:0:0:0:0:0:0:1]:8077')
  assert.equal(addressString('::1', 5000), '[0:0:0:0:0:0:0:1]:5000')
  assert.equal(addressString('2001:DB8:0:0:8:800:200C:417A', 1), '[2001:db8:0:0:8:800:200c:417a]:1')
  assert.equal(addressString('fe80::1%eth0', 2), '[fe80:0:0:0:0:0:0:1]:2')
})

test('Msg decoding is lenient like serde_cbor: any key order, unknown keys, packed arrays, text or bytes', () => {
  const reordered = Buffer.concat([Buffer.from([0xa4]), cborText('message'), Buffer.from([0x42, 0x68, 0x69]), cborText('extra'), Buffer.from([0x01]), cborText('channel'), cborText('ch'), cborText('uid'), cborText('alice')])
  assert.deepEqual(decodeMsg(reordered), { uid: 'alice', channel: 'ch', message: Buffer.from('hi') })
  const packed = Buffer.concat([Buffer.from([0x83]), cborText('alice'), cborText('ch'), Buffer.from([0x42, 0x68, 0x69])])
  assert.deepEqual(decodeMsg(packed), { uid: 'alice', channel: 'ch', message: Buffer.from('hi') })
  const textMessage = Buffer.concat([Buffer.from([0x83]), cborText('alice'), cborText('ch'), cborText('hi')])
  assert.deepEqual(Buffer.from(decodeMsg(textMessage).message).toString(), 'hi')
})

test('undecodable, truncated, trailing or mistyped CBOR gives the empty Msg, never an exception', () => {
  const empty = { uid: '', channel: '', message: new Uint8Array(0) }
  const full = Buffer.from(MSG_HEX, 'hex')
  for (const payload of [
    full.subarray(0, 20), // truncated
    Buffer.concat([full, Buffer.from([0x00])]), // trailing byte
    Buffer.from([0xff]), // break outside indefinite item
    Buffer.concat([Buffer.from([0x83]), Buffer.from([0x01, 0x02, 0x03])]), // integers for strings
    Buffer.concat([Buffer.from([0xa2]), cborText('uid'), cborText('a'), cborText('channel'), cborText('c')]), // no message
    Buffer.from('5bffffffffffffffff', 'hex'), // a byte string claiming 2^64 bytes
    Buffer.alloc(100_000, 0x81) // deep nesting
  ]) {
    const decoded = decodeMsg(payload)
    assert.deepEqual({ ...decoded, message: new Uint8Array(decoded.message) }, empty, payload.subarray(0, 12).toString('hex'))
  }
})

test('fuzz: decodeMsg and decodeResync never throw', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
    decodeMsg(bytes)
    decodeResync(bytes)
  }), { numRuns: 2000 })
})

test('the frame reader cuts a stream at any chunking and refuses bad prefixes', () => {
  const frames = [Buffer.from(FRAME_10_1, 'hex'), Buffer.from(JOIN_10_1, 'hex'), Buffer.from(FRAME_10_2, 'hex')]
  const stream = Buffer.concat(frames)
  for (const size of [1, 2, 7, 16, 17, 48, 49, 50, stream.length]) {
    const reader = new V1FrameReader()
    const got: Buffer[] = []
    for (let i = 0; i < stream.length; i += size) {
      const result = reader.push(stream.subarray(i, i + size))
      assert.ok(Array.isArray(result))
      got.push(...result)
    }
    assert.deepEqual(got, frames, `chunks of ${size}`)
    assert.equal(reader.pendingBytes, 0)
  }
  assert.equal(new V1FrameReader().push(Buffer.from('4e000021' + '00'.repeat(12), 'hex')), 'bad type')
  assert.equal(new V1FrameReader().push(Buffer.from('4d000000' + '00'.repeat(12), 'hex')), 'zero length')
  assert.equal(new V1FrameReader(1024).push(Buffer.from('4d000401' + '00'.repeat(12), 'hex')), 'over limit')
  assert.deepEqual(new V1FrameReader().push(Buffer.from('4d0000', 'hex')), [], 'a truncated prefix waits for more')
})

function cborText (value: string): Buffer {
  const bytes = Buffer.from(value)
  return Buffer.concat([Buffer.from([0x60 | bytes.length]), bytes])
}
