// The lobby page: the shared room and the user's private, read-only channel,
// both through the Mles browser client the site serves. The session cookie
// goes with the WebSocket upgrade by itself: the page holds no token.
import { MlesClient } from '/assets/mles-client.js'

const $ = (id) => document.getElementById(id)
const { user: me, endpoint: path, room: roomName } = document.body.dataset
const endpoint = location.origin.replace(/^http/, 'ws') + path

/** Refusals that retrying cannot mend; the reasons are the server's (see docs/protocol.md). */
const FOR_GOOD = {
  forbidden: ['signed-out', 'Your session has ended. Sign in again to chat.'],
  'uid not allowed': ['signed-out', 'Your session has ended. Sign in again to chat.'],
  'uid already joined on this channel': ['in-use', 'The chat is already open in another tab or window.']
}
const STATUS_TEXT = { connecting: 'connecting…', reconnecting: 'reconnecting…', online: 'online', 'signed-out': 'signed out', 'in-use': 'open elsewhere', offline: 'offline' }
const states = { room: 'connecting', inbox: 'connecting' }

function showStatus () {
  const values = Object.values(states)
  const final = values.find((state) => state === 'signed-out' || state === 'in-use' || state === 'offline')
  const state = final ?? (values.every((value) => value === 'online') ? 'online' : values.includes('reconnecting') ? 'reconnecting' : 'connecting')
  const status = $('status')
  status.dataset.state = state
  document.body.dataset.roomState = states.room
  document.body.dataset.inboxState = states.inbox
  status.textContent = STATUS_TEXT[state]
  $('say').hidden = state !== 'online'
}

function showProblem (html) {
  const problem = $('problem')
  problem.innerHTML = html
  problem.hidden = false
}

function time (iso) {
  const date = new Date(iso ?? Date.now())
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
}

function parse (message) {
  if (message.binary || typeof message.data !== 'string') return null
  try {
    const value = JSON.parse(message.data)
    return typeof value === 'object' && value !== null ? value : null
  } catch {
    return null
  }
}

function append (list, item) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  list.append(item)
  if (atBottom) list.scrollTop = list.scrollHeight
}

function addMessage (uid, text, when) {
  const item = document.createElement('li')
  if (uid === me) item.className = 'mine'
  const meta = document.createElement('div')
  meta.className = 'meta'
  const who = document.createElement('span')
  who.className = 'who'
  who.textContent = uid
  const stamp = document.createElement('time')
  stamp.textContent = time(when)
  meta.append(who, stamp)
  const body = document.createElement('div')
  body.className = 'text'
  body.textContent = text
  item.append(meta, body)
  append($('messages'), item)
}

function addNotice (list, text, when) {
  const item = document.createElement('li')
  item.className = 'notice'
  item.textContent = when === undefined ? text : `${time(when)} · ${text}`
  append(list, item)
}

let onlineTimer = null
/** Who is in the lobby, from the site (app.mles.members); asked again a moment after each presence frame. */
function refreshOnline () {
  clearTimeout(onlineTimer)
  onlineTimer = setTimeout(async () => {
    const response = await fetch('/api/online')
    if (!response.ok) return
    const { online } = await response.json()
    $('online').replaceChildren(...online.map((uid) => {
      const item = document.createElement('li')
      item.textContent = uid === me ? `${uid} (you)` : uid
      return item
    }))
  }, 100)
}

/** Opens one channel; on a refusal for good, stops the client instead of letting it retry. */
function connect (name, channel, onMessage) {
  const client = new MlesClient(endpoint, { uid: me, channel })
  client.on('message', onMessage)
  client.on('open', () => { states[name] = 'online'; showStatus() })
  client.on('reconnecting', () => { if (states[name] === 'online' || states[name] === 'connecting') { states[name] = 'reconnecting'; showStatus() } })
  client.on('close', ({ code, reason, willReconnect }) => {
    const forGood = code === 1008 ? FOR_GOOD[reason] : undefined
    if (forGood !== undefined) {
      // Deferred: the client schedules its retry after this listener returns, and close() must cancel it.
      queueMicrotask(() => { void client.close() })
      states[name] = forGood[0]
      showProblem(forGood[0] === 'signed-out' ? `${forGood[1]} <a href="/">Sign in</a>` : forGood[1])
    } else if (!willReconnect) {
      states[name] = 'offline'
    }
    showStatus()
  })
  return client
}

const room = connect('room', roomName, (message) => {
  const frame = parse(message)
  if (frame === null) return
  if (frame.type === 'presence' && typeof frame.uid === 'string') {
    addNotice($('messages'), `${frame.uid} ${frame.event === 'left' ? 'left' : 'joined'}`, frame.time)
    refreshOnline()
  } else if (typeof frame.message === 'string') {
    // The name is what the sender's page wrote: Mles does not stamp frames with their sender.
    addMessage(typeof frame.uid === 'string' ? frame.uid : 'someone', frame.message, frame.time)
  }
})

connect('inbox', `user:${me}`, (message) => {
  const frame = parse(message)
  // Only the server can write here (the channel is read-only for its member), so what it says is trusted.
  if (frame?.type === 'notice' && typeof frame.text === 'string') addNotice($('notices'), frame.text, frame.time)
})

room.on('open', refreshOnline)

$('say').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('text')
  const text = input.value.trim()
  if (text === '' || room.state !== 'open') return
  const now = new Date().toISOString()
  room.send(JSON.stringify({ uid: me, message: text, time: now }))
  // Mles sends a frame to the other members only: show our own here.
  addMessage(me, text, now)
  input.value = ''
})

showStatus()
