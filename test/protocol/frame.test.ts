import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import * as ws from 'ws'
import { encodeFrame, framePayload, isBinaryFrame } from '../../src/protocol/frame.js'

// ws exports its Receiver and Sender, but @types/ws does not declare them.
const { Receiver, Sender } = ws as unknown as {
  Receiver: new (options: { isServer: boolean, maxPayload: number }) => EventEmitter & { write: (chunk: Buffer) => void }
  Sender: { frame: (data: Buffer, options: { fin: boolean, opcode: number, mask: boolean, readOnly: boolean, rsv1: boolean }) => Buffer[] }
}

// ws's own Receiver (client side) decodes what we encode: an independent check of the framing.
async function decode (wire: Buffer): Promise<{ data: Buffer, isBinary: boolean }> {
  return await new Promise((resolve, reject) => {
    const receiver = new Receiver({ isServer: false, maxPayload: 0 })
    receiver.on('message', (data: Buffer, isBinary: boolean) => { resolve({ data, isBinary }) })
    receiver.on('error', reject)
    receiver.write(wire)
  })
}

test('frames of every length class decode to the same payload and type', async () => {
  for (const length of [0, 1, 125, 126, 127, 65535, 65536, 1024 * 1024 + 3]) {
    const payload = Buffer.alloc(length, 97 + (length % 26))
    for (const binary of [true, false]) {
      const wire = encodeFrame(payload, binary)
      const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10
      assert.equal(wire.length, headerLength + length)
      assert.equal(isBinaryFrame(wire), binary)
      assert.ok(framePayload(wire).equals(payload))
      const decoded = await decode(wire)
      assert.equal(decoded.isBinary, binary)
      assert.ok(decoded.data.equals(payload), `length ${length}`)
    }
  }
})

test('the header matches what ws itself would send', () => {
  for (const length of [5, 300, 70000]) {
    const payload = Buffer.alloc(length, 7)
    const [header] = Sender.frame(payload, { fin: true, opcode: 2, mask: false, readOnly: true, rsv1: false })
    assert.ok(encodeFrame(payload, true).subarray(0, header.length).equals(header))
  }
})
