import { STATUS_CODES } from 'node:http'
import AjvCompiler from '@fastify/ajv-compiler'
import type { FastifyContextConfig, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { BearerKey } from './bearer-key.js'
import type { MlesEndpoint } from './endpoint.js'
import type { PerIpLimit } from './per-ip-limit.js'
import { channelsSchema, historySchema, membersSchema, publishSchema, type ChannelParams, type PublishBody } from './http-api-schemas.js'

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * The largest body a valid publish can have: text data written entirely in
 * JSON escapes (`\u0001`) is six bytes per byte of payload; base64 is 4/3.
 * The slack covers the channel name and the keys.
 */
function publishBodyLimit (maxMessageBytes: number): number {
  return 6 * maxMessageBytes + 64 * 1024
}

/** Fastify's Ajv without its defaults that would let a wrong body pass: no type coercion, no silently removed properties. */
const strictValidator = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } })

function sendError (reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send({ statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message })
}

function isBase64 (data: string): boolean {
  return data.length % 4 === 0 && BASE64.test(data)
}

/**
 * The HTTP API for backends (option `api`): publish, channels, history and
 * members under `api.prefix`, each request carrying the bearer key. Its own
 * encapsulated context, so its validator, body parser and error handler stay
 * out of the app's routes, and the app's stay out of it. The per-IP limit
 * (`perIp`) counts the requests without the right key, before the key is
 * checked, so it slows down guessing and leaves the app's backends alone.
 */
export async function addHttpApi (app: FastifyInstance, server: MlesEndpoint, perIp: PerIpLimit | null): Promise<void> {
  const api = server.options.api
  if (api === undefined) return
  const key = new BearerKey(api.key)
  const { maxMessageBytes } = server.options
  const config: FastifyContextConfig = perIp === null ? {} : { rateLimit: perIp.routeConfig('requests without the API key', (request) => key.check(request.headers.authorization) === 'valid') }

  await app.register(async (scope) => {
    if (perIp !== null) await perIp.register(scope)
    scope.setValidatorCompiler(strictValidator)
    // Only JSON, parsed by Fastify's own parser whatever the app registered for it.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, scope.getDefaultJsonParser('error', 'error'))
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
      if (statusCode >= 500) request.log.error({ err: error }, 'mles: an HTTP API request failed')
      return sendError(reply, statusCode, statusCode >= 500 ? 'the request failed' : error.message)
    })

    // preParsing: after the per-IP limit's onRequest hook, before any body is read.
    scope.addHook('preParsing', (request: FastifyRequest, reply: FastifyReply, payload, done) => {
      const check = key.check(request.headers.authorization)
      if (check === 'valid') {
        done(null, payload)
        return
      }
      reply.header('www-authenticate', check === 'missing' ? 'Bearer' : 'Bearer error="invalid_token"')
      sendError(reply, 401, check === 'missing' ? 'send the API key as Authorization: Bearer <key>' : 'the API key is wrong')
    })

    scope.post<{ Body: PublishBody }>('/publish', { schema: publishSchema, config, bodyLimit: publishBodyLimit(maxMessageBytes) }, async (request, reply) => {
      const { channel, data, binary = false } = request.body
      if (binary && !isBase64(data)) return sendError(reply, 400, 'body/data must be base64 when binary is true')
      const payload = Buffer.from(data, binary ? 'base64' : 'utf8')
      if (payload.length > maxMessageBytes) return sendError(reply, 413, `data of ${payload.length} bytes is over maxMessageBytes (${maxMessageBytes})`)
      if (server.isClosed) return sendError(reply, 503, 'the Mles server is shutting down')
      server.publish(channel, payload, { binary })
      return { ok: true }
    })

    scope.get('/channels', { schema: channelsSchema, config }, async () => ({ channels: server.channels() }))

    scope.get<{ Params: ChannelParams }>('/channels/:name/history', { schema: historySchema, config }, async (request) => ({
      frames: (await server.clusterHistory(request.params.name)).map((frame) => ({
        data: frame.data.toString(frame.isBinary ? 'base64' : 'utf8'),
        binary: frame.isBinary
      }))
    }))

    scope.get<{ Params: ChannelParams }>('/channels/:name/members', { schema: membersSchema, config }, async (request) => ({
      members: await server.members(request.params.name)
    }))
  }, { prefix: api.prefix })
}
