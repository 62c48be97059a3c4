import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import fastifyCookie from '@fastify/cookie'
import fastifyFormbody from '@fastify/formbody'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import mles, { type MlesAuthorize, type MlesOptions } from '../../src/index.js'
import { closeSpareConnectionsOnClose } from '../spare-connections.js'
import { checkPassword, DEMO_USERS, USER_NAME, type WebsiteUser } from './users.js'

// An existing-style site (a login form, a session cookie, pages rendered on
// the server) with the Mles endpoint added: a shared room and a private,
// server-fed channel per user, both decided by the site's own login.

/** A signed-in visitor: who, and until when. */
export interface WebsiteSession {
  readonly id: string
  readonly user: string
  readonly expires: number
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The live session the request's cookie names, or null (set by the site's onRequest hook). */
    siteSession: WebsiteSession | null
  }
}

export interface WebsiteOptions {
  /** Accounts that may sign in. Default: `DEMO_USERS` (alice, bob, carol). */
  users?: readonly WebsiteUser[]
  /** Signs the session cookie; at least 32 characters. Default: random at each start (every session ends with the process anyway). */
  cookieSecret?: string
  /**
   * Browser origins allowed to open a WebSocket, as `scheme://host[:port]`:
   * the site's public address(es), e.g. `['https://chat.example.com']`.
   * Default: this server's own listening address (`http://127.0.0.1:<port>`
   * and `http://localhost:<port>`), fine for running it locally.
   */
  origins?: readonly string[]
  /** Mark the cookie `Secure` (serve over HTTPS, or behind a TLS proxy). Default false. */
  secureCookies?: boolean
  /** How long a sign-in lasts. Default 8 hours. */
  sessionTtlMs?: number
  /** Fastify's logger option. Default false. */
  logger?: FastifyServerOptions['logger']
  /** More plugin options (history size, limits); the site sets `path`, `authorize` and `allowedOrigins` itself. */
  mles?: Omit<MlesOptions, 'path' | 'authorize' | 'allowedOrigins'>
}

export interface StartWebsiteOptions extends WebsiteOptions {
  /** Default 8090; 0 picks a free port. */
  port?: number
  /** Default `127.0.0.1`. */
  host?: string
}

export interface RunningWebsite {
  app: FastifyInstance
  address: AddressInfo
  /** `http://host:port` as bound */
  url: string
  close: () => Promise<void>
}

/** The shared room every signed-in user chats in. */
export const LOBBY = 'room:lobby'
/** The WebSocket endpoint's path. */
export const MLES_PATH = '/mles'
const COOKIE = 'sid'
const DEFAULT_TTL_MS = 8 * 60 * 60 * 1000

/** The read-only channel the server writes a user's notifications to. */
export function privateChannel (user: string): string {
  return `user:${user}`
}

const ASSETS: Record<string, { file: URL, type: string }> = {
  '/assets/chat.js': { file: new URL('./public/chat.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  '/assets/site.css': { file: new URL('./public/site.css', import.meta.url), type: 'text/css; charset=utf-8' },
  // The browser client, as `npm run build:browser` makes it.
  '/assets/mles-client.js': { file: new URL('../../dist/browser/mles-client.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  '/assets/mles-client.js.map': { file: new URL('../../dist/browser/mles-client.js.map', import.meta.url), type: 'application/json' }
}

/** What pages may load and connect to: only this site ('self' covers ws:// and wss:// of the same host). */
const CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function layout (title: string, body: string, bodyAttributes = '', script = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/site.css">
</head>
<body${bodyAttributes}>
${body}
${script === '' ? '' : `<script type="module" src="${script}"></script>`}
</body>
</html>
`
}

function signOutForm (): string {
  return '<form method="post" action="/logout" class="inline"><button type="submit" class="quiet" id="logout">Sign out</button></form>'
}

function homePage (session: WebsiteSession | null, demo: boolean, failed: boolean): string {
  if (session !== null) {
    return layout('Mles website example', `<main class="card narrow">
  <h1>Hello, ${escapeHtml(session.user)}</h1>
  <p>You are signed in.</p>
  <p><a class="button" href="/chat" id="open-chat">Open the chat</a> ${signOutForm()}</p>
</main>`)
  }
  return layout('Sign in · Mles website example', `<main class="card narrow">
  <h1>Sign in</h1>
  <form method="post" action="/login" id="login">
    <label>Name <input name="name" autocomplete="username" required maxlength="32"></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required maxlength="200"></label>
    ${failed ? '<p class="error" role="alert" id="login-error">Wrong name or password.</p>' : ''}
    <button type="submit">Sign in</button>
  </form>
  ${demo ? '<p class="hint">Demo accounts: <code>alice</code> / <code>wonderland</code>, <code>bob</code> / <code>the-builder</code>, <code>carol</code> / <code>christmas</code>.</p>' : ''}
</main>`)
}

function chatPage (session: WebsiteSession): string {
  const user = escapeHtml(session.user)
  return layout('Lobby · Mles website example', `<header class="bar">
  <h1>Lobby</h1>
  <p id="status" class="status" data-state="connecting" aria-live="polite">connecting…</p>
  <span class="me">${user}</span>
  ${signOutForm()}
</header>
<p id="problem" class="error" role="alert" hidden></p>
<div class="layout">
  <section class="card room">
    <ol id="messages" aria-live="polite"></ol>
    <form id="say" autocomplete="off">
      <input id="text" placeholder="Write to everyone in the lobby" maxlength="2000" aria-label="Message">
      <button type="submit">Send</button>
    </form>
  </section>
  <aside class="card side">
    <h2>Online</h2>
    <ul id="online"></ul>
    <h2>Notifications</h2>
    <ol id="notices" aria-live="polite"></ol>
  </aside>
</div>`, ` data-user="${user}" data-endpoint="${MLES_PATH}" data-room="${LOBBY}"`, '/assets/chat.js')
}

function sendPage (reply: FastifyReply, html: string, status = 200): FastifyReply {
  return reply.code(status).header('content-security-policy', CSP).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(html)
}

/** The form of an origin the browser sends: lower-case scheme and host, no default port. */
function originOf (value: string): string | null {
  try {
    const url = new URL(value)
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : null
  } catch {
    return null
  }
}

/** Builds the site (not listening yet): pages, login, sessions, and the Mles endpoint at `/mles`. */
export async function buildWebsite (options: WebsiteOptions = {}): Promise<FastifyInstance> {
  const users = options.users ?? DEMO_USERS
  for (const user of users) {
    if (!USER_NAME.test(user.name)) throw new Error(`website: user name ${JSON.stringify(user.name)} must match ${String(USER_NAME)}`)
  }
  const cookieSecret = options.cookieSecret ?? randomBytes(32).toString('base64url')
  if (cookieSecret.length < 32) throw new Error('website: cookieSecret must have at least 32 characters')
  const ttlMs = options.sessionTtlMs ?? DEFAULT_TTL_MS
  const secure = options.secureCookies ?? false
  /** Live sessions by id; a process restart ends them all. */
  const sessions = new Map<string, WebsiteSession>()

  const app = Fastify({ logger: options.logger ?? false })
  let closing = false
  // Added before the plugin's own preClose hook, so it runs first: no publishing into a closing endpoint.
  app.addHook('preClose', async () => { closing = true })

  await app.register(fastifyCookie, { secret: cookieSecret })
  await app.register(fastifyFormbody)

  const liveSession = (id: string | undefined): WebsiteSession | null => {
    if (id === undefined) return null
    const session = sessions.get(id)
    if (session === undefined) return null
    if (session.expires <= Date.now()) {
      sessions.delete(id)
      return null
    }
    return session
  }

  app.decorateRequest('siteSession', null)
  // Every request, the WebSocket upgrade included, learns who sent it from the signed cookie.
  app.addHook('onRequest', async (request) => {
    const raw = request.cookies[COOKIE]
    if (raw === undefined) return
    const unsigned = request.unsignCookie(raw)
    request.siteSession = unsigned.valid ? liveSession(unsigned.value ?? undefined) : null
  })

  const authorize: MlesAuthorize = (request, { channel }) => {
    // Looked up again: the join frame may come a while after the upgrade, and the user may have signed out meanwhile.
    const session = liveSession(request.siteSession?.id)
    if (session === null) return false
    if (channel.startsWith('room:')) return { uid: session.user }
    if (channel === privateChannel(session.user)) return { uid: session.user, publish: false }
    return false
  }

  const configured = options.origins?.map((origin) => {
    const normalized = originOf(origin)
    if (normalized === null) throw new Error(`website: ${JSON.stringify(origin)} is not an origin like https://chat.example.com`)
    return normalized
  })
  /** Without configured origins: this server's own address, known once it listens. */
  const ownOrigin = (origin: string): boolean => {
    const address = app.server.address()
    if (address === null || typeof address === 'string') return false
    return [`http://127.0.0.1:${address.port}`, `http://localhost:${address.port}`].includes(originOf(origin) ?? '')
  }

  await app.register(mles, {
    ...options.mles,
    path: MLES_PATH,
    authorize,
    allowedOrigins: configured ?? ownOrigin
  })
  closeSpareConnectionsOnClose(app)

  // Presence: the room hears who comes and goes, so pages refresh their list of who is online.
  const presence = (event: 'joined' | 'left') => ({ channel, uid }: { channel: string, uid: string }): void => {
    if (closing || !channel.startsWith('room:')) return
    app.mles.publish(channel, JSON.stringify({ type: 'presence', event, uid, time: new Date().toISOString() }))
  }
  app.mles.on('join', presence('joined'))
  app.mles.on('leave', presence('left'))
  app.mles.on('join', ({ channel, uid, ip, origin }) => { app.log.info({ channel, uid, ip, origin }, 'website: joined') })

  /** Tells every user, on their private channel, that `user` has signed in. */
  const notifyLogin = (user: string, ip: string): void => {
    const time = new Date().toISOString()
    for (const { name } of users) {
      const text = name === user ? `You signed in from ${ip}` : `${user} logged in`
      app.mles.publish(privateChannel(name), JSON.stringify({ type: 'notice', text, time }))
    }
  }

  app.get('/', async (request, reply) => sendPage(reply, homePage(request.siteSession, users === DEMO_USERS, false)))

  app.post<{ Body: Record<string, unknown> | undefined }>('/login', async (request, reply) => {
    const name = typeof request.body?.name === 'string' ? request.body.name.trim() : ''
    const password = typeof request.body?.password === 'string' ? request.body.password : ''
    const user = name === '' || password === '' ? null : await checkPassword(users, name, password)
    if (user === null) return sendPage(reply, homePage(null, users === DEMO_USERS, true), 401)
    // A fresh id at every sign-in; the old session, if any, ends.
    if (request.siteSession !== null) sessions.delete(request.siteSession.id)
    const session: WebsiteSession = { id: randomBytes(32).toString('base64url'), user: user.name, expires: Date.now() + ttlMs }
    sessions.set(session.id, session)
    reply.setCookie(COOKIE, session.id, { signed: true, httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: Math.floor(ttlMs / 1000) })
    notifyLogin(user.name, request.ip)
    return await reply.redirect('/chat', 303)
  })

  app.post('/logout', async (request, reply) => {
    if (request.siteSession !== null) sessions.delete(request.siteSession.id)
    reply.clearCookie(COOKIE, { path: '/' })
    return await reply.redirect('/', 303)
  })

  app.get('/chat', async (request, reply) => {
    if (request.siteSession === null) return await reply.redirect('/', 303)
    return sendPage(reply, chatPage(request.siteSession))
  })

  app.get('/api/online', async (request, reply) => {
    if (request.siteSession === null) return await reply.code(401).send({ error: 'sign in first' })
    return { online: await app.mles.members(LOBBY) }
  })

  for (const [path, asset] of Object.entries(ASSETS)) {
    app.get(path, async (_request: FastifyRequest, reply: FastifyReply) => {
      let body: Buffer
      try {
        body = await readFile(fileURLToPath(asset.file))
      } catch {
        return await reply.code(404).send({ error: path.includes('mles-client') ? 'the browser client is not built: run npm run build:browser' : 'not found' })
      }
      return await reply.type(asset.type).header('cache-control', 'no-cache').send(body)
    })
  }

  return app
}

/** Builds the site and listens (127.0.0.1:8090 by default). */
export async function startWebsite (options: StartWebsiteOptions = {}): Promise<RunningWebsite> {
  const { port = 8090, host = '127.0.0.1', ...rest } = options
  const app = await buildWebsite(rest)
  await app.listen({ port, host })
  const address = app.server.address() as AddressInfo
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    app,
    address,
    url: `http://${shown}:${address.port}`,
    close: async () => { await app.close() }
  }
}
