import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { parseHeader, type HeaderResult } from '../../src/protocol/header.js'

const MAX = 1024 * 1024
const parse = (value: unknown): HeaderResult => parseHeader(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)), false, MAX)
const reasonOf = (result: HeaderResult): string => result.ok ? 'ok' : `${result.rejection.code} ${result.rejection.reason}`

test('a valid header is accepted and kept byte for byte when it has no auth', () => {
  const text = '{ "uid": "alice", "channel": "lobby", "extra": [1, 2] }'
  const result = parse(text)
  assert.ok(result.ok)
  assert.equal(result.header.uid, 'alice')
  assert.equal(result.header.channel, 'lobby')
  assert.equal(result.header.auth, undefined)
  assert.equal(result.header.storedFrame.toString(), text)
})

test('the stored join frame drops auth and keeps every other field', () => {
  const result = parse({ uid: 'a', channel: 'c', auth: '0123456789abcdef', avatar: 'x' })
  assert.ok(result.ok)
  assert.equal(result.header.auth, '0123456789abcdef')
  assert.deepEqual(JSON.parse(result.header.storedFrame.toString()), { uid: 'a', channel: 'c', avatar: 'x' })
  const nullAuth = parse('{"uid":"a","channel":"c","auth":null}')
  assert.ok(nullAuth.ok)
  assert.equal(nullAuth.header.auth, undefined)
  assert.deepEqual(JSON.parse(nullAuth.header.storedFrame.toString()), { uid: 'a', channel: 'c' })
})

test('every bad header of SPEC §2 is refused with a code and a reason', () => {
  const cases: Array<[string, HeaderResult, string]> = [
    ['binary', parseHeader(Buffer.from('{"uid":"a","channel":"c"}'), true, MAX), '1003 invalid header: binary frame'],
    ['too large', parseHeader(Buffer.from(JSON.stringify({ uid: 'a', channel: 'c', pad: 'x'.repeat(100) })), false, 50), '1009 invalid header: too large'],
    ['not JSON', parse('{uid: a}'), '1008 invalid header: not JSON'],
    ['empty', parse(''), '1008 invalid header: not JSON'],
    ['array', parse([{ uid: 'a', channel: 'c' }]), '1008 invalid header: not a JSON object'],
    ['number', parse('42'), '1008 invalid header: not a JSON object'],
    ['string', parse('"uid"'), '1008 invalid header: not a JSON object'],
    ['null', parse('null'), '1008 invalid header: not a JSON object'],
    ['uid missing', parse({ channel: 'c' }), '1008 invalid header: uid missing'],
    ['uid number', parse({ uid: 1, channel: 'c' }), '1008 invalid header: uid must be a string'],
    ['uid null', parse({ uid: null, channel: 'c' }), '1008 invalid header: uid must be a string'],
    ['uid empty', parse({ uid: '', channel: 'c' }), '1008 invalid header: uid is empty'],
    ['uid non-ASCII', parse({ uid: 'ä', channel: 'c' }), '1008 invalid header: uid must be ASCII'],
    ['channel missing', parse({ uid: 'a' }), '1008 invalid header: channel missing'],
    ['channel object', parse({ uid: 'a', channel: {} }), '1008 invalid header: channel must be a string'],
    ['channel empty', parse({ uid: 'a', channel: '' }), '1008 invalid header: channel is empty'],
    ['channel non-ASCII', parse({ uid: 'a', channel: '日本' }), '1008 invalid header: channel must be ASCII'],
    ['auth number', parse({ uid: 'a', channel: 'c', auth: 12 }), '1008 invalid header: auth must be a string'],
    ['auth array', parse({ uid: 'a', channel: 'c', auth: ['x'] }), '1008 invalid header: auth must be a string']
  ]
  for (const [name, result, expected] of cases) assert.equal(reasonOf(result), expected, name)
})

test('prototype keys are never taken for fields', () => {
  assert.equal(reasonOf(parse('{"__proto__": {"uid": "a", "channel": "c"}}')), '1008 invalid header: uid missing')
  assert.equal(reasonOf(parse('{"constructor": {"uid": "a"}, "channel": "c"}')), '1008 invalid header: uid missing')
  const result = parse('{"uid": "a", "channel": "c", "__proto__": {"polluted": true}, "auth": "00"}')
  assert.ok(result.ok)
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  assert.match(result.header.storedFrame.toString(), /"__proto__":\{"polluted":true\}/)
})

test('hostile headers: deep nesting, huge strings, invalid UTF-8', () => {
  const deep = '{"uid":"a","channel":"c","auth":"1","x":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}'
  const deepResult = parse(deep)
  // Either JSON.parse refuses it or we store a shallow join frame; never an exception.
  if (deepResult.ok) assert.deepEqual(JSON.parse(deepResult.header.storedFrame.toString()), { uid: 'a', channel: 'c' })
  assert.equal(reasonOf(parse('['.repeat(500_000))), '1008 invalid header: not JSON')
  assert.equal(reasonOf(parse({ uid: 'a'.repeat(MAX), channel: 'c' })), '1009 invalid header: too large')
  assert.ok(parse({ uid: 'a'.repeat(100_000), channel: 'c' }).ok)
  const invalidUtf8 = Buffer.concat([Buffer.from('{"uid":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('","channel":"c"}')])
  assert.equal(reasonOf(parseHeader(invalidUtf8, false, MAX)), '1008 invalid header: uid must be ASCII')
})

// Property tests: whatever arrives, parseHeader returns a well-formed verdict and never throws.
const checkVerdict = (result: HeaderResult): void => {
  if (result.ok) {
    assert.equal(typeof result.header.uid, 'string')
    assert.ok(result.header.uid.length > 0 && /^[\x00-\x7f]+$/.test(result.header.uid))
    assert.ok(result.header.channel.length > 0 && /^[\x00-\x7f]+$/.test(result.header.channel))
    assert.ok(!('auth' in JSON.parse(result.header.storedFrame.toString())))
  } else {
    assert.ok([1003, 1008, 1009].includes(result.rejection.code))
    assert.ok(Buffer.byteLength(result.rejection.reason) <= 123)
  }
}

test('fuzz: random bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), fc.boolean(), (bytes, binary) => {
    checkVerdict(parseHeader(Buffer.from(bytes), binary, MAX))
  }), { numRuns: 2000 })
})

test('fuzz: random JSON values', () => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
    checkVerdict(parse(JSON.stringify(value) ?? 'null'))
  }), { numRuns: 2000 })
})

test('fuzz: near-valid headers with hostile fields', () => {
  const hostileValue = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 50 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.constant(''),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.string(), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'uid', 'toString'), fc.string(), { maxKeys: 3 })
  )
  const header = fc.record({
    uid: hostileValue,
    channel: hostileValue,
    auth: hostileValue,
    ['__proto__']: hostileValue,
    constructor: hostileValue
  }, { requiredKeys: [] })
  fc.assert(fc.property(header, (value) => {
    const text = JSON.stringify(value)
    const result = parse(text)
    checkVerdict(result)
    const typed = value as Record<string, unknown>
    const validField = (field: unknown): boolean => typeof field === 'string' && field.length > 0 && /^[\x00-\x7f]+$/.test(field)
    const expectedOk = validField(typed.uid) && validField(typed.channel) &&
      (typed.auth === undefined || typed.auth === null || typeof typed.auth === 'string')
    assert.equal(result.ok, expectedOk, text)
  }), { numRuns: 3000 })
})
