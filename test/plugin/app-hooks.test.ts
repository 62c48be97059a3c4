import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { startMles, waitForMembers } from '../helpers/server.js'
import { TestClient, refusedUpgrade } from '../helpers/client.js'

/** Only upgrades carrying this header are refused by the app's hook, so members can still join. */
const REFUSE = 'x-refuse'

interface RawAnswer {
  /** Everything the server wrote, as latin1 text. */
  text: string
  /** How the socket ended: the server closed it, or it was still open after `waitMs`. */
  ended: 'closed' | 'open'
  /** Left open when the server did not close it, so a test can see whether it holds up app.close(). */
  socket: Socket
}

/** Sends an upgrade request on a raw socket and reads what comes back until the server closes it or `waitMs` passes. */
async function rawUpgrade (port: number, protocol = 'mles-websocket', waitMs = 1500): Promise<RawAnswer> {
  const socket = connect({ host: '127.0.0.1', port })
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
  socket.write([
    'GET / HTTP/1.1',
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    `Sec-WebSocket-Protocol: ${protocol}`,
    `${REFUSE}: 1`,
    '', ''
  ].join('\r\n'))
  const ended = await new Promise<RawAnswer['ended']>((resolve) => {
    const timer = setTimeout(() => { resolve('open') }, waitMs)
    socket.once('close', () => { clearTimeout(timer); resolve('closed') })
    socket.on('error', () => {})
  })
  return { text: Buffer.concat(chunks).toString('latin1'), ended, socket }
}

function statusOf (answer: RawAnswer): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer.text)?.[1] ?? 0)
}

function bodyOf (answer: RawAnswer): unknown {
  const at = answer.text.indexOf('\r\n\r\n')
  return at === -1 ? null : JSON.parse(answer.text.slice(at + 4))
}

async function closeWithin (app: FastifyInstance, ms = 3000): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`app.close() did not finish within ${ms} ms`)) }, ms)
  })
  try {
    await Promise.race([app.close(), timeout])
  } finally {
    clearTimeout(timer)
  }
}

const refused = (request: FastifyRequest): boolean => request.headers[REFUSE] !== undefined

interface HookCase {
  name: string
  status: number
  message: string
  add: (app: FastifyInstance) => void
}

const hookCases: HookCase[] = [
  {
    name: 'an onRequest hook that throws',
    status: 500,
    message: 'hook failed',
    add: (app) => {
      app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
        if (refused(request)) throw new Error('hook failed')
        done()
      })
    }
  },
  {
    name: 'an async onRequest hook that rejects',
    status: 500,
    message: 'hook rejected',
    add: (app) => {
      app.addHook('onRequest', async (request: FastifyRequest) => {
        await new Promise((resolve) => setImmediate(resolve))
        if (refused(request)) throw new Error('hook rejected')
      })
    }
  },
  {
    name: 'an onRequest hook that replies 401 itself',
    status: 401,
    message: 'log in first',
    add: (app) => {
      app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
        if (refused(request)) return await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'log in first' })
      })
    }
  },
  {
    name: 'a preValidation hook that throws',
    status: 500,
    message: 'preValidation failed',
    add: (app) => {
      app.addHook('preValidation', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
        if (refused(request)) throw new Error('preValidation failed')
        done()
      })
    }
  },
  {
    name: 'a preHandler hook that throws',
    status: 500,
    message: 'preHandler failed',
    add: (app) => {
      app.addHook('preHandler', async (request: FastifyRequest) => {
        if (refused(request)) throw new Error('preHandler failed')
      })
    }
  }
]

interface WebsocketSetup {
  name: string
  setup: (app: FastifyInstance, addHook: (app: FastifyInstance) => void) => Promise<void>
}

const websocketSetups: WebsocketSetup[] = [
  { name: 'the plugin brings @fastify/websocket', setup: async (app, addHook) => { addHook(app) } },
  {
    name: 'the app registers @fastify/websocket before its hook',
    setup: async (app, addHook) => {
      await app.register(fastifyWebsocket)
      addHook(app)
    }
  },
  {
    name: 'the app registers @fastify/websocket after its hook',
    setup: async (app, addHook) => {
      addHook(app)
      await app.register(fastifyWebsocket)
    }
  }
]

for (const { name: setupName, setup } of websocketSetups) {
  for (const hook of hookCases) {
    test(`${hook.name} (${setupName}): the client gets the HTTP answer, the socket closes, app.close() finishes`, async () => {
      const { app, url, port } = await startMles({}, async (instance) => { await setup(instance, hook.add) })
      const a = await TestClient.join(url, { uid: 'a', channel: 'c' })
      await waitForMembers(app, 'c', 1)
      const b = await TestClient.join(url, { uid: 'b', channel: 'c' })
      assert.equal((await b.next()).text, '{"uid":"a","channel":"c"}')
      await waitForMembers(app, 'c', 2)

      const raw = await rawUpgrade(port)
      try {
        assert.equal(statusOf(raw), hook.status, raw.text)
        assert.equal((bodyOf(raw) as { message?: string }).message, hook.message)

        const answer = await refusedUpgrade(url, 'mles-websocket', { headers: { [REFUSE]: '1' } })
        assert.equal(answer.status, hook.status)
        assert.equal(JSON.parse(answer.body).message, hook.message)

        // The members are undisturbed.
        b.send('still here')
        assert.equal((await a.next()).text, 'still here')
        assert.equal(app.mles.channels().find((info) => info.name === 'c')?.members, 2)

        // Before the fix the raw socket was still open here, and app.close() waited for it.
        await closeWithin(app)
        assert.equal((await a.closedWithin()).code, 1001)
        assert.equal((await b.closedWithin()).code, 1001)
        assert.equal(raw.ended, 'closed', 'the server closed the socket')
        assert.match(raw.text, /\r\nconnection: close\r\n/i)
      } finally {
        raw.socket.destroy()
      }
    })
  }
}

test('the plugin\'s own refusals also answer with Connection: close and close the socket', async () => {
  const { app, port } = await startMles()
  const raw = await rawUpgrade(port, 'chat')
  assert.equal(statusOf(raw), 400, raw.text)
  assert.match(raw.text, /\r\nconnection: close\r\n/i)
  assert.equal(raw.ended, 'closed')
  try {
    await closeWithin(app)
  } finally {
    raw.socket.destroy()
  }
})
