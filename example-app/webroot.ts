import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { negotiate } from '@fastify/accept-negotiator'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import pLimit from 'p-limit'

export interface WebRootOptions {
  /** `wwwroot/<domain>/` is served for Host `<domain>`. */
  wwwroot: string
  /** Configured domains, lower case; any other Host gets 404. */
  domains: string[]
  /** Most static files open at once. */
  fileLimit: number
  /** Bytes of compressed bodies kept in memory; 0 = compress on the fly (@fastify/compress) every time. */
  compressionCacheBytes: number
}

/** Counters of the compressed-body cache. */
export interface WebRootStats {
  compressions: number
  cacheHits: number
  /** Most static files ever open at once (bounded by `fileLimit`). */
  peakOpenFiles: number
}

/** Bodies worth compressing: text, JSON, JavaScript, XML, SVG, wasm and friends. */
const COMPRESSIBLE = /^(text\/|application\/(json|javascript|ecmascript|xml|xhtml\+xml|rss\+xml|atom\+xml|manifest\+json|ld\+json|wasm)|image\/svg\+xml)/
const MIN_COMPRESS_BYTES = 1024
/** Larger files are compressed on the fly instead of cached. */
const MAX_CACHED_FILE_BYTES = 8 * 1024 * 1024

const hasZstd = typeof (zlib as { zstdCompress?: unknown }).zstdCompress === 'function'
/** Encodings offered, best first; zstd only where this Node has it. */
export const ENCODINGS: string[] = hasZstd ? ['zstd', 'br', 'gzip'] : ['br', 'gzip']

const brotli = promisify(zlib.brotliCompress)
const gzip = promisify(zlib.gzip)

async function compress (body: Buffer, encoding: string): Promise<Buffer> {
  if (encoding === 'br') {
    return await brotli(body, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } })
  }
  if (encoding === 'gzip') return await gzip(body, { level: 9 })
  const zstd = promisify((zlib as unknown as { zstdCompress: (input: Buffer, callback: (error: Error | null, result: Buffer) => void) => void }).zstdCompress)
  return await zstd(body)
}

/** The domain a Host header names: lower case, port and trailing dot removed. */
export function hostDomain (host: string | undefined): string | null {
  if (host === undefined || host === '') return null
  const lower = host.toLowerCase()
  const name = lower.startsWith('[') ? lower.slice(0, lower.indexOf(']') + 1) : lower.split(':')[0]
  return name.replace(/\.$/, '')
}

export type PathVerdict = { ok: true, path: string } | { ok: false, status: 400 | 403 }

/**
 * The file a URL path names, relative to a domain's folder — or why not.
 * Decodes percent escapes once, then refuses NUL bytes, backslashes and any
 * `.` or `..` segment, so no spelling (`..`, `%2e%2e`, `%2f`, `\`) can climb
 * out of the folder. A path ending in `/` names its index.html.
 */
export function staticPath (url: string): PathVerdict {
  const rawPath = url.split('?')[0].split('#')[0]
  let decoded: string
  try {
    decoded = decodeURIComponent(rawPath)
  } catch {
    return { ok: false, status: 400 }
  }
  if (decoded.includes('\0') || decoded.includes('\\') || rawPath.includes('\\')) return { ok: false, status: 400 }
  const segments = decoded.split('/').filter((segment) => segment !== '')
  if (segments.some((segment) => segment === '..' || segment === '.')) return { ok: false, status: 403 }
  let path = segments.join('/')
  if (path === '' || decoded.endsWith('/')) path = path === '' ? 'index.html' : `${path}/index.html`
  return { ok: true, path }
}

interface StaticFile {
  absolute: string
}

const kStaticFile = Symbol('mles.staticFile')
type StaticRequest = FastifyRequest & { [kStaticFile]?: StaticFile }

async function readAll (stream: Readable, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > limit) {
      stream.destroy()
      return null
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/**
 * Serves `wwwroot/<domain>/` for configured domains through @fastify/static,
 * with at most `fileLimit` files open at once and, when a cache size is set,
 * compressed bodies kept in an LRU keyed by file, mtime, size and encoding.
 * Register before @fastify/compress, whose on-the-fly compression then handles
 * only what the cache does not.
 */
export async function registerWebRoot (app: FastifyInstance, options: WebRootOptions): Promise<WebRootStats> {
  const stats: WebRootStats = { compressions: 0, cacheHits: 0, peakOpenFiles: 0 }
  const domains = new Set(options.domains)
  const openFiles = pLimit(options.fileLimit)
  await app.register(fastifyStatic, { root: options.wwwroot, serve: false })

  if (options.compressionCacheBytes > 0) {
    const cache = new LRUCache<string, { mtimeMs: number, size: number, body: Buffer }>({
      maxSize: options.compressionCacheBytes,
      sizeCalculation: (entry) => Math.max(1, entry.body.length)
    })
    const maxFileBytes = Math.min(MAX_CACHED_FILE_BYTES, options.compressionCacheBytes)
    app.addHook('onSend', async (request: StaticRequest, reply, payload) => {
      const file = request[kStaticFile]
      if (file === undefined || reply.statusCode !== 200 || request.method !== 'GET') return payload
      if (payload === null || typeof (payload as Readable).pipe !== 'function') return payload
      if (reply.hasHeader('content-range') || reply.hasHeader('content-encoding')) return payload
      if (!COMPRESSIBLE.test(String(reply.getHeader('content-type') ?? ''))) return payload
      const encoding = negotiate(String(request.headers['accept-encoding'] ?? ''), ENCODINGS)
      if (encoding === null || encoding === undefined || encoding === 'identity') return payload
      let info
      try {
        info = await stat(file.absolute)
      } catch {
        return payload
      }
      if (info.size < MIN_COMPRESS_BYTES || info.size > maxFileBytes) return payload

      const key = `${file.absolute}\0${encoding}`
      let entry = cache.get(key)
      if (entry !== undefined && entry.mtimeMs === info.mtimeMs && entry.size === info.size) {
        stats.cacheHits++
        ;(payload as Readable).destroy()
      } else {
        const body = await readAll(payload as Readable, maxFileBytes)
        if (body === null) return payload
        entry = { mtimeMs: info.mtimeMs, size: info.size, body: await compress(body, encoding) }
        stats.compressions++
        cache.set(key, entry)
      }
      const etag = reply.getHeader('etag')
      if (typeof etag === 'string') reply.header('etag', etag.replace(/"$/, `-${encoding}"`))
      reply.header('content-encoding', encoding).header('content-length', entry.body.length).header('vary', 'accept-encoding')
      return entry.body
    })
  }

  const serve = async (request: StaticRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const domain = hostDomain(request.headers.host)
    if (domain === null || !domains.has(domain)) return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'unknown host' })
    const verdict = staticPath(request.url)
    if (!verdict.ok) {
      return await reply.code(verdict.status).send({ statusCode: verdict.status, error: verdict.status === 400 ? 'Bad Request' : 'Forbidden', message: 'invalid path' })
    }
    const root = join(options.wwwroot, domain)
    request[kStaticFile] = { absolute: join(root, verdict.path) }
    if (verdict.path.endsWith('.json')) reply.header('access-control-allow-origin', '*')
    await openFiles(async () => {
      stats.peakOpenFiles = Math.max(stats.peakOpenFiles, openFiles.activeCount)
      const finished = new Promise((resolve) => { reply.raw.once('close', resolve) })
      reply.sendFile(verdict.path, root, { dotfiles: 'ignore', index: false })
      await finished
    })
    return reply
  }
  app.get('/', serve)
  app.get('/*', serve)
  return stats
}
