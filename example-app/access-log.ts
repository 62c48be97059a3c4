import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

/**
 * Fastify's per-request lines ("incoming request", "request completed", a
 * route not found, a 4xx from the default error handler, a stream closed
 * early) at `debug` instead of `info`, so that a join storm or an attack
 * is not a logging storm; errors stay at `error`. `--access-log` keeps
 * Fastify's own levels.
 */
export class DebugAccessLog extends LogController {
  override incomingRequest (request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request')
  }

  override requestCompleted (error: Error | null | undefined, _request: FastifyRequest, reply: FastifyReply): void {
    if (error !== null && error !== undefined) reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
    else reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed')
  }

  override routeNotFound (request: FastifyRequest): void {
    request.log.debug(`Route ${request.raw.method ?? ''}:${request.raw.url ?? ''} not found`)
  }

  override defaultErrorLog (error: Error, request: FastifyRequest, reply: FastifyReply): void {
    if (reply.statusCode >= 500) reply.log.error({ req: request, res: reply, err: error }, error.message)
    else reply.log.debug({ res: reply, err: error }, error.message)
  }
}
