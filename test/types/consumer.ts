// Type-checked by `npm test` (tsc), never run: the published entry points and
// their types, imported by package name as a user would.
import Fastify from 'fastify'
import mles, { MlesOptionError, type MlesFrame, type MlesMetricsSnapshot, type MlesOptions } from 'fastify-mles'
import { computeAuth, joinFrame, MLES_PROTOCOL } from 'fastify-mles/client'

export async function usage (): Promise<void> {
  const options: MlesOptions = { historyLimit: 10, key: 'k' }
  const app = Fastify()
  await app.register(mles, options)
  app.mles.publish('c', 'text')
  app.mles.publish('c', new Uint8Array([1]), { binary: true })
  const stop: () => void = app.mles.subscribe('c', (frame: MlesFrame) => {
    const uid: string | null = frame.uid
    const join: boolean = frame.join
    void uid
    void join
  })
  stop()
  const metrics: MlesMetricsSnapshot = app.mles.metrics()
  const active: number = metrics.active_connections
  const names: string[] = app.mles.channels().map((channel) => channel.name)
  const first: Buffer | undefined = app.mles.history('c')[0]?.data
  void active
  void names
  void first
  const auth: string = computeAuth('u', 'c', 'k')
  const frame: string = joinFrame({ uid: 'u', channel: 'c', key: 'k' })
  const protocol: 'mles-websocket' = MLES_PROTOCOL
  void auth
  void frame
  void protocol
  void new MlesOptionError('x', 'y').option
  await app.mles.close()
  // @ts-expect-error publish takes no numbers
  app.mles.publish('c', 42)
}
