// fastify-mles as a user would run it, with the limits that would throttle a load test turned off.
import Fastify from 'fastify'
import mles from 'fastify-mles'
import { serve } from './common.js'

const app = Fastify({ logger: false })
await app.register(mles, { messagesPerSecond: 0, perIpLimit: 0, perIpChannelLimit: 0 })
await app.listen({ port: 0, host: '127.0.0.1' })
serve((app.server.address() as { port: number }).port)
