import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import mles, { type MlesOptions } from '../../src/index.js'

export interface RunningServer {
  app: FastifyInstance
  /** ws:// URL of the Mles endpoint. */
  url: string
  /** http:// origin. */
  origin: string
  port: number
}

/** Starts a Fastify app with the plugin on 127.0.0.1, a free port. */
export async function startMles (
  options: MlesOptions = {},
  setup?: (app: FastifyInstance) => void | Promise<void>,
  fastifyOptions: FastifyServerOptions = {},
  port = 0
): Promise<RunningServer> {
  const app = Fastify({ logger: false, ...fastifyOptions })
  if (setup !== undefined) await setup(app)
  await app.register(mles, options)
  await app.listen({ port, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const path = options.path ?? '/'
  return {
    app,
    url: `ws://127.0.0.1:${address.port}${path}`,
    origin: `http://127.0.0.1:${address.port}`,
    port: address.port
  }
}

/** Polls `condition` until it holds; fails after `timeoutMs`. */
export async function waitFor (condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Waits until `channel` has exactly `count` members. */
export async function waitForMembers (app: FastifyInstance, channel: string, count: number): Promise<void> {
  await waitFor(() => (app.mles.channels().find((info) => info.name === channel)?.members ?? 0) === count,
    `${count} member(s) on channel ${channel}`)
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
