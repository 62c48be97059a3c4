// Runs the website example: `npm run example:website` (or `node --import tsx example-app/website/main.ts`).
// Environment: PORT (default 8090), HOST (default 127.0.0.1), WEBSITE_ORIGINS (comma-separated
// public origins, when it is reached under another address), WEBSITE_COOKIE_SECRET (32+ characters).
import { startWebsite } from './website.js'

const origins = process.env.WEBSITE_ORIGINS?.split(',').map((origin) => origin.trim()).filter((origin) => origin !== '')
const site = await startWebsite({
  port: Number(process.env.PORT ?? 8090),
  host: process.env.HOST ?? '127.0.0.1',
  logger: { level: 'info' },
  ...(origins === undefined || origins.length === 0 ? {} : { origins }),
  ...(process.env.WEBSITE_COOKIE_SECRET === undefined ? {} : { cookieSecret: process.env.WEBSITE_COOKIE_SECRET })
})
console.log(`website example at ${site.url}/ — sign in as alice / wonderland, bob / the-builder or carol / christmas`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void site.close() })
}
