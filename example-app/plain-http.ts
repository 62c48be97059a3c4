import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { DebugAccessLog } from './access-log.js'
import type { ServerConfig } from './config.js'
import { describeListenError, listen } from './listen.js'
import { closeSpareConnectionsOnClose } from './spare-connections.js'
import { hostDomain } from './webroot.js'

/**
 * The plain HTTP listener on `httpPort`: ACME http-01 challenges (answered by
 * `challengeResponse`) and, with `redirect`, 301 to https on the port
 * `httpsPort()` says. Run by the server, or by the primary of `mles --workers`.
 */
export async function startPlainHttp (
  config: ServerConfig,
  logger: { loggerInstance: FastifyBaseLogger } | { logger: { level: string } },
  challengeResponse: (token: string) => string | undefined,
  httpsPort: () => number
): Promise<{ app: FastifyInstance, address: AddressInfo }> {
  const app = Fastify({ ...logger, ...(config.accessLog ? {} : { logController: new DebugAccessLog() }), return503OnClosing: true }) as unknown as FastifyInstance
  closeSpareConnectionsOnClose(app)
  const domains = new Set(config.domains)
  app.get('/.well-known/acme-challenge/:token', async (request, reply) => {
    const answer = challengeResponse((request.params as { token: string }).token)
    if (answer === undefined) return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'no such challenge' })
    return await reply.type('application/octet-stream').send(answer)
  })
  app.get('/*', async (request, reply) => {
    const domain = hostDomain(request.headers.host)
    if (!config.redirect || domain === null || !domains.has(domain)) {
      return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: config.redirect ? 'unknown host' : 'use https' })
    }
    const port = httpsPort()
    return await reply.redirect(`https://${domain}${port === 443 ? '' : `:${port}`}${request.url}`, 301)
  })
  try {
    return { app, address: await listen(app, config.host, config.httpPort) }
  } catch (error) {
    await app.close()
    throw describeListenError(error, config.redirect ? 'the redirect and ACME http-01' : 'ACME http-01', config.host, config.httpPort)
  }
}
