// The demo chat: the Mles client from the server's bundle, no framework.
import { MlesClient } from '/_mles/client.js'

const $ = (id) => document.getElementById(id)
const endpoint = location.origin.replace(/^http/, 'ws') + '/'
const ascii = /^[\x20-\x7e]+$/
let client = null
let me = ''

function showError (element, text) {
  element.textContent = text
  element.hidden = text === ''
}

function setStatus (state, text) {
  const status = $('status')
  status.dataset.state = state
  status.textContent = text
}

function time (date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
}

function add (entry) {
  const list = $('messages')
  const item = document.createElement('li')
  if (entry.notice !== undefined) {
    item.className = 'notice'
    item.textContent = entry.notice
  } else {
    if (entry.uid === me) item.classList.add('mine')
    const meta = document.createElement('div')
    meta.className = 'meta'
    const who = document.createElement('span')
    who.className = 'who'
    who.textContent = entry.uid ?? 'someone'
    const when = document.createElement('time')
    when.textContent = time(entry.time)
    meta.append(who, when)
    const text = document.createElement('div')
    text.className = 'text'
    text.textContent = entry.text
    item.append(meta, text)
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  list.append(item)
  if (atBottom || entry.uid === me) list.scrollTop = list.scrollHeight
}

function render (message) {
  if (message.kind === 'join') {
    add({ notice: `${message.uid} joined` })
    return
  }
  if (message.binary) {
    add({ uid: message.uid, text: `[${message.data.length} bytes of binary data]`, time: new Date() })
    return
  }
  try {
    const frame = JSON.parse(message.data)
    if (typeof frame.message === 'string') {
      add({ uid: typeof frame.uid === 'string' ? frame.uid : undefined, text: frame.message, time: new Date(frame.time ?? Date.now()) })
      return
    }
  } catch {}
  add({ uid: message.uid, text: message.data, time: new Date() })
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault()
  const uid = $('uid').value.trim()
  const channel = $('channel').value.trim()
  const key = $('key').value
  const error = $('join-error')
  if (uid === '' || channel === '') return showError(error, 'Please enter a name and a channel.')
  if (!ascii.test(uid) || !ascii.test(channel)) return showError(error, 'Names and channels must use plain ASCII letters, digits and punctuation.')
  showError(error, '')
  me = uid
  $('messages').replaceChildren()
  $('room-title').textContent = `#${channel}`
  $('join').hidden = true
  $('room').hidden = false
  setStatus('connecting', 'connecting…')
  client = new MlesClient(endpoint, { uid, channel, ...(key === '' ? {} : { key }), resync: true })
  client.on('message', render)
  client.on('join', render)
  client.on('open', ({ reconnect }) => {
    setStatus('open', 'online')
    if (reconnect) add({ notice: 'reconnected' })
    $('text').focus()
  })
  client.on('reconnecting', ({ delayMs }) => { setStatus('reconnecting', `reconnecting in ${Math.ceil(delayMs / 1000)} s…`) })
  client.on('close', ({ code, reason, willReconnect }) => {
    // Someone else holds this name here: retrying would not help.
    if (reason === 'uid already joined on this channel') {
      client.close()
      willReconnect = false
    }
    if (willReconnect) return
    setStatus('closed', 'offline')
    const why = reason === 'authentication failed'
      ? 'The server refused the key for this name and channel.'
      : reason === 'uid already joined on this channel' ? `The name "${uid}" is already in use on this channel.` : `Disconnected (${code}${reason === '' ? '' : `: ${reason}`}).`
    showError($('say-error'), why)
  })
})

$('say').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('text')
  const text = input.value.trim()
  if (text === '' || client === null) return
  if (client.state === 'closed') return showError($('say-error'), 'Not connected: leave and join again.')
  const now = new Date()
  client.send(JSON.stringify({ uid: me, message: text, time: now.toISOString() }))
  add({ uid: me, text, time: now })
  input.value = ''
})

$('leave').addEventListener('click', () => {
  client?.close()
  client = null
  $('room').hidden = true
  $('join').hidden = false
  showError($('say-error'), '')
  setStatus('idle', 'not connected')
})
