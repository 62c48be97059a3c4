/// <reference lib="dom" />
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { MlesFrame } from '../../src/index.js'
import { startWebsite, type RunningWebsite, type StartWebsiteOptions } from '../../example-app/website/website.js'
import { waitFor } from '../helpers/server.js'

// The website example (example-app/website) in a real headless Chromium: sign-in, session
// cookie, the lobby and the private channel, and what the site refuses.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const bundle = fileURLToPath(new URL('../../dist/browser/mles-client.js', import.meta.url))
const artifacts = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const screenshotForDocs = fileURLToPath(new URL('../../docs/website.png', import.meta.url))
const PASSWORDS: Record<string, string> = { alice: 'wonderland', bob: 'the-builder', carol: 'christmas' }

let browser: Browser
const sites: RunningWebsite[] = []
const contexts: BrowserContext[] = []
const pageErrors: string[] = []

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`)
  if (!existsSync(bundle)) throw new Error('the browser client is not built: run npm run build:browser')
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
})
after(async () => {
  await browser?.close()
  await Promise.all(sites.map(async (site) => { await site.close() }))
  assert.deepEqual(pageErrors, [], 'no page threw')
})

async function start (options: StartWebsiteOptions = {}): Promise<RunningWebsite> {
  const site = await startWebsite({ port: 0, host: '127.0.0.1', ...options })
  sites.push(site)
  return site
}

/** `promise`, or a failure naming the step if it takes longer than `ms` (a hang then says where it is). */
async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`timed out after ${ms} ms waiting for ${what}`)) }, ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A browser profile of its own: its own cookie jar. */
async function newContext (): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 720 } })
  contexts.push(context)
  context.on('page', (page) => { page.on('pageerror', (error) => { pageErrors.push(`${page.url()}: ${error.message}`) }) })
  return context
}

/** Signs in through the form, as a person does; lands on the lobby. */
async function signIn (site: RunningWebsite, name: string, context?: BrowserContext): Promise<Page> {
  const page = await (context ?? await newContext()).newPage()
  await page.goto(`${site.url}/`)
  await page.fill('input[name=name]', name)
  await page.fill('input[name=password]', PASSWORDS[name])
  await Promise.all([page.waitForURL(`${site.url}/chat`), page.click('#login button[type=submit]')])
  return page
}

/** Signs in with a form POST from the context (its cookie jar keeps the cookie), and opens the home page, which holds no connection. */
async function signInQuietly (site: RunningWebsite, name: string): Promise<Page> {
  const context = await newContext()
  const answer = await context.request.post(`${site.url}/login`, { form: { name, password: PASSWORDS[name] }, maxRedirects: 0 })
  assert.equal(answer.status(), 303)
  const page = await context.newPage()
  await page.goto(`${site.url}/`)
  await page.waitForSelector('#open-chat')
  return page
}

async function online (page: Page): Promise<void> {
  await page.waitForSelector('#status[data-state="online"]', { timeout: 15_000 })
}

async function see (page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(({ selector, text }) => Array.from(document.querySelectorAll(selector)).some((item) => item.textContent?.includes(text) === true), { selector, text }, { timeout: 10_000 })
}

async function onlineList (page: Page, expected: string[]): Promise<void> {
  await page.waitForFunction((expected) => Array.from(document.querySelectorAll('#online li')).map((item) => item.textContent).join(',') === expected.join(','), expected, { timeout: 10_000 })
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

interface RawResult { opened: boolean, errored: boolean, code: number, reason: string, frames: string[] }

/**
 * From the page, a bare WebSocket to the site's endpoint sending `join` first;
 * resolves when it closes, which the page does itself once a frame holds
 * `until` — or after 5 s, with the reason "still open after 5 s".
 */
async function rawJoin (page: Page, join: object, until?: string): Promise<RawResult> {
  return await page.evaluate(async ({ join, until }) => await new Promise<RawResult>((resolve) => {
    const result: RawResult = { opened: false, errored: false, code: 0, reason: '', frames: [] }
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/mles', 'mles-websocket')
    const timer = setTimeout(() => { ws.close(4000, 'still open after 5 s') }, 5000)
    ws.onopen = () => { result.opened = true; ws.send(JSON.stringify(join)) }
    ws.onmessage = (event) => {
      result.frames.push(String(event.data))
      if (until !== undefined && String(event.data).includes(until)) ws.close(1000)
    }
    ws.onerror = () => { result.errored = true }
    ws.onclose = (event) => {
      clearTimeout(timer)
      Object.assign(result, { code: event.code, reason: event.reason })
      resolve(result)
    }
  }), { join, until })
}

function frameText (frame: MlesFrame): string {
  return frame.data.toString()
}

test('two signed-in users chat in the lobby, see who is online, and a second tab is told the chat is open elsewhere', async () => {
  const site = await start()
  const alice = await signIn(site, 'alice')
  await online(alice)
  const bob = await signIn(site, 'bob')
  await online(bob)
  await see(alice, '#messages li.notice', 'bob joined')
  await onlineList(alice, ['alice (you)', 'bob'])
  await onlineList(bob, ['alice', 'bob (you)'])
  assert.deepEqual(await site.app.mles.members('room:lobby'), ['alice', 'bob'])

  await say(alice, 'hello bob')
  await see(bob, '#messages li', 'hello bob')
  const seenByBob = bob.locator('#messages li', { hasText: 'hello bob' })
  assert.equal(await seenByBob.locator('.who').textContent(), 'alice')
  assert.equal(await seenByBob.getAttribute('class'), null, 'not marked as bob\'s own')
  await say(bob, 'hi alice')
  await see(alice, '#messages li', 'hi alice')
  assert.equal(await alice.locator('#messages li', { hasText: 'hi alice' }).locator('.who').textContent(), 'bob')
  assert.equal(await alice.locator('#messages li.mine', { hasText: 'hello bob' }).count(), 1, 'alice\'s own message shown once, as hers')
  await see(alice, '#notices li', 'bob logged in')
  mkdirSync(artifacts, { recursive: true })
  await alice.screenshot({ path: `${artifacts}website.png` })
  if (process.env.UPDATE_README_SCREENSHOT === '1') copyFileSync(`${artifacts}website.png`, screenshotForDocs)

  // The same user in a second tab: the uid is bound to the login, so Mles refuses it as a duplicate.
  const aliceAgain = await alice.context().newPage()
  await aliceAgain.goto(`${site.url}/chat`)
  await aliceAgain.waitForSelector('#status[data-state="in-use"]')
  assert.match(await aliceAgain.locator('#problem').textContent() ?? '', /already open in another tab/)
  assert.ok(await aliceAgain.locator('#say').isHidden(), 'no message box in the refused tab')
  // The client's first retry would come within 500 ms: none came, the page stopped it.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(site.app.mles.metrics().rejected_duplicates, 2, 'room and private channel refused once each')
  await online(alice)
  await aliceAgain.close()

  // Leaving: the site's on('leave') listener tells the room, and the list follows members().
  await bob.close()
  await see(alice, '#messages li.notice', 'bob left')
  await onlineList(alice, ['alice (you)'])
  const history = site.app.mles.history('room:lobby').map((frame) => frame.data.toString())
  assert.ok(history.some((text) => text.includes('"message":"hello bob"')), 'the room keeps its history')
})

test('the sign-in form refuses a wrong password; the cookie is signed, httpOnly and SameSite=Lax; signing out ends the session', async () => {
  const site = await start()
  const context = await newContext()
  const page = await context.newPage()
  await page.goto(`${site.url}/chat`)
  assert.equal(page.url(), `${site.url}/`, 'the lobby sends a visitor to sign in')
  await page.fill('input[name=name]', 'alice')
  await page.fill('input[name=password]', 'not-her-password')
  const [answer] = await Promise.all([page.waitForResponse(`${site.url}/login`), page.click('#login button[type=submit]')])
  assert.equal(answer.status(), 401)
  assert.equal(await page.locator('#login-error').textContent(), 'Wrong name or password.')
  assert.deepEqual(await context.cookies(), [])

  await page.fill('input[name=name]', 'alice')
  await page.fill('input[name=password]', PASSWORDS.alice)
  await Promise.all([page.waitForURL(`${site.url}/chat`), page.click('#login button[type=submit]')])
  await online(page)
  const [cookie] = await context.cookies()
  assert.equal(cookie.name, 'sid')
  assert.equal(cookie.httpOnly, true)
  assert.equal(cookie.sameSite, 'Lax')
  assert.match(cookie.value, /^[\w-]{43}\.[\w%+/-]+$/, 'a random id and its signature')
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it')
  assert.equal((await context.request.get(`${site.url}/api/online`)).status(), 200)

  await Promise.all([page.waitForURL(`${site.url}/`), page.click('#logout')])
  await page.waitForSelector('#login')
  assert.deepEqual(await context.cookies(), [])
  // The old cookie, replayed, names a session that is gone.
  await context.addCookies([{ ...cookie }])
  assert.equal((await context.request.get(`${site.url}/api/online`)).status(), 401)
  assert.deepEqual(await rawJoin(page, { uid: 'alice', channel: 'room:lobby' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
})

test('a visitor who is not signed in is refused with 1008 "forbidden", and an open lobby says so when its session is gone', async () => {
  const site = await start()
  // Somebody has written in the room, so a refused visitor would have history to see.
  const alice = await signIn(site, 'alice')
  await online(alice)
  await say(alice, 'only for members')
  await waitFor(() => site.app.mles.history('room:lobby').some((frame) => frame.data.toString().includes('only for members')), 'the message in the history')

  const visitor = await (await newContext()).newPage()
  await visitor.goto(`${site.url}/`)
  await visitor.waitForSelector('#login')
  const before = site.app.mles.metrics().rejected_authorize
  assert.deepEqual(await rawJoin(visitor, { uid: 'alice', channel: 'room:lobby' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  assert.deepEqual(await rawJoin(visitor, { uid: 'visitor', channel: 'room:lobby' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  // A cookie the site did not sign is no session either.
  await visitor.context().addCookies([{ name: 'sid', value: 'made-up-session-id', url: site.url }])
  assert.deepEqual(await rawJoin(visitor, { uid: 'alice', channel: 'room:lobby' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  assert.equal(site.app.mles.metrics().rejected_authorize - before, 3)
  assert.equal((await visitor.context().request.get(`${site.url}/api/online`)).status(), 401)

  // The site restarts: sessions were in memory, so alice's page reconnects and is refused for good.
  const port = site.address.port
  await within(10_000, 'the site to close', site.close())
  const restarted = await within(10_000, 'the site to start again', start({ port }))
  await alice.waitForSelector('body[data-room-state="signed-out"][data-inbox-state="signed-out"]', { timeout: 15_000 })
  assert.equal(await alice.locator('#status').getAttribute('data-state'), 'signed-out')
  assert.equal(await alice.locator('#status').textContent(), 'signed out')
  assert.match(await alice.locator('#problem').textContent() ?? '', /session has ended/)
  assert.equal(await alice.locator('#problem a').getAttribute('href'), '/')
  assert.ok(await alice.locator('#say').isHidden())
  // The client would retry within 500 ms of a close; the page stopped it, so the count stays.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(restarted.app.mles.metrics().rejected_authorize, 2, 'the room and the private channel, once each')
  assert.deepEqual(await restarted.app.mles.members('room:lobby'), [])
})

test('a page of another origin cannot open a socket (403 before the upgrade), though the browser sends the cookie', async () => {
  // The other site: a plain HTTP server on another port, its page opening a WebSocket to ?target=.
  const evilPage = `<!doctype html><title>another site</title><script>
    const target = new URLSearchParams(location.search).get('target')
    window.result = new Promise((resolve) => {
      const result = { opened: false, errored: false, code: 0, reason: '', frames: [] }
      const ws = new WebSocket(target, 'mles-websocket')
      setTimeout(() => { ws.close(4000, 'still open after 5 s') }, 5000)
      ws.onopen = () => { result.opened = true; ws.send(JSON.stringify({ uid: 'alice', channel: 'user:alice' })) }
      ws.onmessage = (event) => { result.frames.push(String(event.data)); if (String(event.data).includes('signed in')) ws.close() }
      ws.onerror = () => { result.errored = true }
      ws.onclose = (event) => { result.code = event.code; result.reason = event.reason; resolve(result) }
    })
  </script>`
  const other: Server = createServer((_request, response) => { response.writeHead(200, { 'content-type': 'text/html' }).end(evilPage) })
  await new Promise<void>((resolve) => { other.listen(0, '127.0.0.1', resolve) })
  const otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`
  try {
    const site = await start()
    const alice = await signInQuietly(site, 'alice')
    const evil = await alice.context().newPage()
    await evil.goto(`${otherOrigin}/?target=${encodeURIComponent(`ws://127.0.0.1:${site.address.port}/mles`)}`)
    const refused = await evil.evaluate(async () => await (window as unknown as { result: Promise<RawResult> }).result)
    assert.deepEqual(refused, { opened: false, errored: true, code: 1006, reason: '', frames: [] })
    assert.equal(site.app.mles.metrics().rejected_origin, 1)
    assert.equal(site.app.mles.metrics().rejected_authorize, 0, 'refused before any join')
    // The same socket from the site's own page is fine: it joins, and hears its own arrival announced.
    const own = await rawJoin(alice, { uid: 'alice', channel: 'room:lobby' }, '"presence"')
    assert.equal(own.code, 1000, 'closed by the page, not refused')
    assert.match(own.frames.at(-1) ?? '', /"event":"joined","uid":"alice"/)
    assert.equal(site.app.mles.metrics().rejected_origin, 1)

    // What the origin policy prevents: a site that (wrongly) trusts the other origin lets its page in
    // with alice's cookie, and it reads her private channel.
    const trusting = await start({ origins: [otherOrigin] })
    const victim = await signInQuietly(trusting, 'alice')
    const hijack = await victim.context().newPage()
    await hijack.goto(`${otherOrigin}/?target=${encodeURIComponent(`ws://127.0.0.1:${trusting.address.port}/mles`)}`)
    const hijacked = await hijack.evaluate(async () => await (window as unknown as { result: Promise<RawResult> }).result)
    assert.equal(hijacked.opened, true)
    assert.ok(hijacked.frames.some((frame) => frame.includes('You signed in')), `read alice's notices: ${hijacked.frames.join(' | ')}`)
    assert.equal(trusting.app.mles.metrics().rejected_origin, 0)
  } finally {
    await new Promise((resolve) => { other.close(resolve) })
  }
})

test('a signed-in user can neither join as another uid nor read another user\'s private channel', async () => {
  const site = await start()
  await signInQuietly(site, 'bob')
  const alice = await signInQuietly(site, 'alice')
  // bob's private channel has something to leak: alice's sign-in was announced there.
  assert.ok(site.app.mles.history('user:bob').some((frame) => frame.data.toString().includes('alice logged in')))

  assert.deepEqual(await rawJoin(alice, { uid: 'bob', channel: 'room:lobby' }), { opened: true, errored: false, code: 1008, reason: 'uid not allowed', frames: [] })
  assert.deepEqual(await rawJoin(alice, { uid: 'alice', channel: 'user:bob' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  assert.deepEqual(await rawJoin(alice, { uid: 'bob', channel: 'user:bob' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  assert.deepEqual(await rawJoin(alice, { uid: 'alice', channel: 'elsewhere' }), { opened: true, errored: false, code: 1008, reason: 'forbidden', frames: [] })
  assert.equal(site.app.mles.metrics().rejected_authorize, 4)
  assert.deepEqual(await site.app.mles.members('user:bob'), [])

  // And the allowed joins do get in, with the history (the refusals above are not a broken endpoint).
  const own = await rawJoin(alice, { uid: 'alice', channel: 'user:alice' }, 'You signed in')
  assert.equal(own.code, 1000)
  assert.match(own.frames.join('\n'), /You signed in from 127\.0\.0\.1/)
  const room = await rawJoin(alice, { uid: 'alice', channel: 'room:lobby' }, '"presence"')
  assert.equal(room.code, 1000)
})

test('frames a user sends on its read-only private channel reach no one and are counted', async () => {
  const site = await start()
  const alice = await signInQuietly(site, 'alice')
  const heard: string[] = []
  const unsubscribe = site.app.mles.subscribe('user:alice', (frame) => { heard.push(frameText(frame)) })

  await alice.evaluate(() => {
    const state = { frames: [] as string[], ws: new WebSocket(location.origin.replace(/^http/, 'ws') + '/mles', 'mles-websocket') }
    state.ws.onopen = () => { state.ws.send(JSON.stringify({ uid: 'alice', channel: 'user:alice' })) }
    state.ws.onmessage = (event) => { state.frames.push(String(event.data)) }
    ;(window as unknown as { inbox: typeof state }).inbox = state
  })
  await alice.waitForFunction(() => (window as unknown as { inbox: { frames: string[] } }).inbox.frames.some((frame) => frame.includes('You signed in')), undefined, { timeout: 10_000 })
  await waitFor(() => heard.some((text) => text.includes('"channel":"user:alice"')), 'alice\'s join frame reaching the subscriber')
  heard.length = 0

  await alice.evaluate(() => { (window as unknown as { inbox: { ws: WebSocket } }).inbox.ws.send(JSON.stringify({ type: 'notice', text: 'forged: bob logged in' })) })
  await waitFor(() => site.app.mles.metrics().dropped_messages_readonly === 1, 'the frame counted as dropped')
  // A later frame from the server does arrive, to both: so nothing was merely slow.
  site.app.mles.publish('user:alice', JSON.stringify({ type: 'notice', text: 'from the server', time: new Date().toISOString() }))
  await alice.waitForFunction(() => (window as unknown as { inbox: { frames: string[] } }).inbox.frames.some((frame) => frame.includes('from the server')), undefined, { timeout: 10_000 })
  await waitFor(() => heard.length > 0, 'the server\'s frame at the subscriber')
  assert.equal(heard.length, 1)
  assert.match(heard[0], /from the server/)
  assert.ok(!site.app.mles.history('user:alice').some((frame) => frame.data.toString().includes('forged')), 'not in the history either')
  assert.equal(site.app.mles.metrics().dropped_messages_readonly, 1)
  unsubscribe()
})

test('signing in is announced on every other user\'s private channel; the lobby page shows it, live and from the history', async () => {
  const site = await start()
  await signInQuietly(site, 'carol')
  const alice = await signIn(site, 'alice')
  await online(alice)
  await see(alice, '#notices li', 'carol logged in')
  await see(alice, '#notices li', 'You signed in from 127.0.0.1')
  const bob = await signIn(site, 'bob')
  await see(alice, '#notices li', 'bob logged in')
  await online(bob)
  await see(bob, '#notices li', 'carol logged in')
  await see(bob, '#notices li', 'alice logged in')
  // Nothing about bob's own sign-in but the one addressed to him; and the notices are not in the room.
  assert.equal(await bob.locator('#notices li', { hasText: 'bob logged in' }).count(), 0)
  assert.equal(await alice.locator('#messages li', { hasText: 'logged in' }).count(), 0)
  assert.deepEqual((await site.app.mles.members('user:alice')), ['alice'])
})
