// Adding Mles to an existing Fastify app: the app keeps its own routes (here a
// small chat page at GET /), and the same path answers Mles WebSocket upgrades.
//
//   npm install && node example-app/embed.mjs     (PORT and HOST from the environment)
import Fastify from 'fastify'
import mles from 'fastify-mles'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })

app.get('/', async (_request, reply) => reply.type('text/html').send(page))

await app.register(mles, { historyLimit: 200 })

// Server-side code can watch and post on any channel.
app.mles.subscribe('lobby', (frame) => {
  if (!frame.join && !frame.isBinary && frame.data.toString() === '/time') {
    app.mles.publish('lobby', JSON.stringify({ uid: 'server', message: new Date().toISOString() }))
  }
})

const address = await app.listen({ port: Number(process.env.PORT ?? 8080), host: process.env.HOST ?? '127.0.0.1' })
console.log(`Mles chat on ${address}/  (WebSocket: ${address.replace(/^http/, 'ws')}/)`)

const page = `<!doctype html>
<meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Mles lobby</title>
<style>body{font:16px system-ui;max-width:40em;margin:2em auto;padding:0 1em}#log{white-space:pre-wrap}</style>
<h1>Mles lobby</h1>
<form id="say"><input id="text" autocomplete="off" placeholder="say something (try /time)"> <button>Send</button></form>
<div id="log"></div>
<script type="module">
const uid = 'guest-' + Math.random().toString(36).slice(2, 7)
const log = (line) => { document.getElementById('log').textContent += line + '\\n' }
const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/', 'mles-websocket')
ws.onopen = () => { ws.send(JSON.stringify({ uid, channel: 'lobby' })); log('joined lobby as ' + uid) }
ws.onmessage = (event) => {
  try {
    const frame = JSON.parse(event.data)
    log(frame.message === undefined ? frame.uid + ' joined' : frame.uid + ': ' + frame.message)
  } catch { log(event.data) }
}
ws.onclose = (event) => log('closed: ' + event.code + ' ' + event.reason)
document.getElementById('say').onsubmit = (event) => {
  event.preventDefault()
  const text = document.getElementById('text')
  ws.send(text.value === '/time' ? '/time' : JSON.stringify({ uid, message: text.value }))
  if (text.value !== '/time') log(uid + ': ' + text.value)
  text.value = ''
}
</script>`
