/// <reference lib="dom" />
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startServer, type ServerHandle } from '../../example-app/server.js'

// The demo chat page in a real headless Chromium (Debian's, via playwright-core; nothing is downloaded).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const www = fileURLToPath(new URL('../../example-app/www', import.meta.url))
const artifacts = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const screenshotForReadme = fileURLToPath(new URL('../../docs/chat.png', import.meta.url))
const phoneScreenshotForReadme = fileURLToPath(new URL('../../docs/chat-phone.png', import.meta.url))

let browser: Browser
const servers: ServerHandle[] = []
before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
})
after(async () => {
  await browser?.close()
  await Promise.all(servers.map(async (server) => { await server.shutdown() }))
})

async function serve (port = 0, key?: string): Promise<ServerHandle> {
  const server = await startServer({ domains: ['localhost', '127.0.0.1'], wwwroot: www, tls: 'none', host: '127.0.0.1', port, logLevel: 'silent', metricsLogIntervalSec: 0, ...(key === undefined ? {} : { key }) })
  servers.push(server)
  return server
}

async function openPage (server: ServerHandle, width = 900): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height: 720 } })
  page.on('pageerror', (error) => { throw error })
  await page.goto(`http://127.0.0.1:${server.address.port}/`)
  return page
}

/** Everything that went wrong while a page loaded and ran: failed requests, 4xx/5xx responses, console errors. */
function watchProblems (page: Page): string[] {
  const problems: string[] = []
  page.on('response', (response) => { if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`) })
  page.on('requestfailed', (request) => { problems.push(`failed ${request.url()}: ${request.failure()?.errorText ?? ''}`) })
  page.on('console', (message) => { if (message.type() === 'error') problems.push(`console error: ${message.text()} (${message.location().url})`) })
  return problems
}

async function join (page: Page, uid: string, channel = 'lobby', key = ''): Promise<void> {
  await page.fill('#uid', uid)
  await page.fill('#channel', channel)
  if (key !== '') {
    await page.click('summary')
    await page.fill('#key', key)
  }
  await page.click('#join button[type=submit]')
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

async function seeText (page: Page, text: string): Promise<void> {
  await page.waitForFunction((wanted) => Array.from(document.querySelectorAll('#messages li')).some((item) => item.textContent?.includes(wanted) === true), text, { timeout: 10_000 })
}

async function status (page: Page, state: string): Promise<void> {
  await page.waitForSelector(`#status[data-state="${state}"]`, { timeout: 15_000 })
}

test('two pages chat both ways; a third joins later and sees the history; a server restart is survived', async () => {
  let server = await serve()
  const port = server.address.port
  const alice = await openPage(server)
  const bob = await openPage(server, 375) // a phone-width screen
  await join(alice, 'alice')
  await status(alice, 'open')
  await join(bob, 'bob')
  await status(bob, 'open')
  await seeText(bob, 'alice joined')

  await say(alice, 'hello bob')
  await seeText(bob, 'hello bob')
  const bobSees = await bob.locator('#messages li', { hasText: 'hello bob' })
  assert.equal(await bobSees.locator('.who').textContent(), 'alice')
  assert.match(await bobSees.locator('time').textContent() ?? '', /\d{1,2}:\d{2}/)
  await say(bob, 'hi alice')
  await seeText(alice, 'hi alice')
  assert.ok(await bob.evaluate(() => document.documentElement.scrollWidth <= 375), 'no horizontal scrolling at phone width')

  const carol = await openPage(server)
  await join(carol, 'carol')
  await status(carol, 'open')
  for (const text of ['alice joined', 'bob joined', 'hello bob', 'hi alice']) await seeText(carol, text)
  assert.equal(await carol.locator('#messages li', { hasText: 'hello bob' }).count(), 1, 'the history once')

  await say(carol, 'hello everyone, I just read the history')
  await seeText(alice, 'I just read the history')
  mkdirSync(artifacts, { recursive: true })
  await carol.screenshot({ path: `${artifacts}chat.png` })
  await bob.screenshot({ path: `${artifacts}chat-phone.png` })
  if (process.env.UPDATE_README_SCREENSHOT === '1') {
    copyFileSync(`${artifacts}chat.png`, screenshotForReadme)
    copyFileSync(`${artifacts}chat-phone.png`, phoneScreenshotForReadme)
  }

  // restart the server with empty memory: the pages show it, reconnect, and the clients resync the history
  await server.shutdown()
  await status(alice, 'reconnecting')
  server = await serve(port)
  for (const page of [alice, bob, carol]) await status(page, 'open')
  await seeText(alice, 'reconnected')
  await say(alice, 'after the restart')
  await seeText(bob, 'after the restart')
  await seeText(carol, 'after the restart')
  const dave = await openPage(server)
  await join(dave, 'dave')
  await status(dave, 'open')
  for (const text of ['hello bob', 'hi alice', 'after the restart']) await seeText(dave, text)
  assert.equal(await dave.locator('#messages li', { hasText: 'hello bob' }).count(), 1, 'resynced history, each message once')

  for (const page of [alice, bob, carol, dave]) await page.close()
  await server.shutdown()
})

test('the page loads without a failed request or console error, with its favicon', async () => {
  const server = await serve()
  const page = await browser.newPage({ viewport: { width: 900, height: 720 } })
  const problems = watchProblems(page)
  page.on('pageerror', (error) => { problems.push(`page error: ${error.message}`) })
  await page.goto(`http://127.0.0.1:${server.address.port}/`, { waitUntil: 'networkidle' })
  const icon = await page.evaluate(async () => {
    const link = document.querySelector<HTMLLinkElement>('link[rel="icon"]')
    if (link === null) return null
    const response = await fetch(link.href)
    return { status: response.status, type: response.headers.get('content-type') }
  })
  assert.ok(icon !== null, 'the page links an icon')
  assert.equal(icon.status, 200)
  assert.match(icon.type ?? '', /^image\/svg\+xml/)
  await join(page, 'fay')
  await status(page, 'open')
  await say(page, 'a quiet console')
  await seeText(page, 'a quiet console')
  await page.click('#leave')
  await page.waitForSelector('#status[data-state="idle"]')
  await page.reload({ waitUntil: 'networkidle' })
  assert.deepEqual(problems, [])
  await page.close()
  await server.shutdown()
})

test('the message box and the Leave button show only while joined', async () => {
  const server = await serve()
  const page = await openPage(server)
  const joined = ['#text', '#say button[type=submit]', '#leave', '#messages']
  const visible = async (selectors: string[]): Promise<boolean[]> => await Promise.all(selectors.map(async (selector) => await page.locator(selector).isVisible()))
  assert.deepEqual(await visible(joined), joined.map(() => false), 'hidden before joining')
  assert.ok(await page.locator('#join').isVisible(), 'the join form shows instead')
  await join(page, 'gus')
  await status(page, 'open')
  assert.deepEqual(await visible(joined), joined.map(() => true), 'shown once joined')
  assert.ok(await page.locator('#join').isHidden(), 'no join form while joined')
  await page.click('#leave')
  assert.deepEqual(await visible(joined), joined.map(() => false), 'hidden again after Leave')
  assert.ok(await page.locator('#join').isVisible(), 'the join form is back')
  // and joining again shows them again
  await join(page, 'gus')
  await status(page, 'open')
  assert.deepEqual(await visible(joined), joined.map(() => true), 'shown on the second join')
  await page.close()
  await server.shutdown()
})

test('bad input in the form gets a visible error', async () => {
  const server = await serve()
  const page = await openPage(server)
  await join(page, '', 'lobby')
  assert.match(await page.locator('#join-error').textContent() ?? '', /enter a name and a channel/)
  assert.ok(await page.locator('#join-error').isVisible())
  await join(page, 'Jürgen', 'lobby')
  assert.match(await page.locator('#join-error').textContent() ?? '', /plain ASCII/)
  await join(page, 'ok', 'lobby')
  await status(page, 'open')
  assert.ok(await page.locator('#join-error').isHidden())
  // the same name twice on one channel
  const twin = await openPage(server)
  await join(twin, 'ok', 'lobby')
  await twin.waitForSelector('#say-error:not([hidden])')
  assert.match(await twin.locator('#say-error').textContent() ?? '', /already in use/)
  await page.close()
  await twin.close()
  await server.shutdown()
})

test('the channel key: a wrong key is refused visibly, the right one joins', async () => {
  const server = await serve(0, 'demo-key')
  const wrong = await openPage(server)
  await join(wrong, 'erin', 'secret', 'not-the-key')
  await wrong.waitForSelector('#say-error:not([hidden])')
  assert.match(await wrong.locator('#say-error').textContent() ?? '', /refused the key/)
  await status(wrong, 'closed')
  const right = await openPage(server)
  await join(right, 'erin', 'secret', 'demo-key')
  await status(right, 'open')
  await wrong.close()
  await right.close()
  await server.shutdown()
})
