// Type tests of `fastify-mles/client`, run by tstyche (`npm run test:types`)
// against the built declarations in dist/, imported by package name.
import WebSocket from 'ws'
import { describe, expect, test } from 'tstyche'
import {
  computeAuth,
  FrameDeduplicator,
  frameHash,
  frameText,
  joinFrame,
  MLES_PROTOCOL,
  MlesClient,
  MlesMqttBridge,
  MlesProxy,
  sipHash24Hex,
  type JoinOptions,
  type MlesClientEvents,
  type MlesClientOptions,
  type MlesClientState,
  type MlesMessage,
  type MlesProxyOptions,
  type ReconnectOptions,
  type WebSocketFactory,
  type WebSocketLike
} from 'fastify-mles/client'

const url = 'wss://mles.example/'
declare const Factory: WebSocketFactory
// Never run: tstyche only type-checks.
const client = new MlesClient(url, { uid: 'u', channel: 'c' })

describe('new MlesClient(url, options)', () => {
  test('uid and channel are required, the rest optional', () => {
    expect(MlesClient).type.toBeConstructableWith(url, { uid: 'u', channel: 'c' })
    expect(MlesClient).type.toBeConstructableWith(url, {
      uid: 'u',
      channel: 'c',
      key: 'k',
      authWithoutKey: true,
      dedup: 0,
      reconnect: { minDelayMs: 1, maxDelayMs: 2, factor: 1.5, maxAttempts: 3 },
      resync: true,
      resyncLimit: 10,
      resyncQuietMs: 100,
      WebSocket: Factory,
      wsOptions: { rejectUnauthorized: false }
    })
    expect(MlesClient).type.toBeConstructableWith(url, { uid: 'u', channel: 'c', reconnect: false })
    expect<MlesClientOptions>().type.toBeAssignableFrom({ uid: 'u', channel: 'c' })
    expect<MlesClientOptions['reconnect']>().type.toBe<boolean | ReconnectOptions | undefined>()

    expect(MlesClient).type.not.toBeConstructableWith(url)
    expect(MlesClient).type.not.toBeConstructableWith(url, {})
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u' })
    expect(MlesClient).type.not.toBeConstructableWith(url, { channel: 'c' })
    // The URL is the first argument, not an option.
    expect(MlesClient).type.not.toBeConstructableWith({ url, uid: 'u', channel: 'c' })
    expect(MlesClient).type.not.toBeConstructableWith(url, { url, uid: 'u', channel: 'c' })
  })

  test('wrong option types are refused', () => {
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 5, channel: 'c' })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 5 })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', key: 5 })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', dedup: true })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', reconnect: 'yes' })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', reconnect: { minDelay: 1 } })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', resync: 1 })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', WebSocket: 'ws' })
    expect(MlesClient).type.not.toBeConstructableWith(url, { uid: 'u', channel: 'c', chanel: 'c' })
    expect(MlesClient).type.not.toBeConstructableWith(new URL(url), { uid: 'u', channel: 'c' })
  })

  test('its members', () => {
    expect(client.uid).type.toBe<string>()
    expect(client.channel).type.toBe<string>()
    expect(client.url).type.toBe<string>()
    expect(client.joinFrame).type.toBe<string>()
    expect(client.state).type.toBe<MlesClientState>()
    expect<MlesClientState>().type.toBe<'connecting' | 'open' | 'reconnecting' | 'closed'>()
    expect(client.bufferedAmount).type.toBe<number>()
    expect(client.ready).type.toBe<Promise<void>>()
    expect(client.send('text')).type.toBe<void>()
    expect(client.send(new Uint8Array([1]))).type.toBe<void>()
    expect(client.close()).type.toBe<Promise<void>>()
    expect(client.messages()).type.toBe<AsyncIterableIterator<MlesMessage>>()
    expect(client).type.toBeAssignableTo<AsyncIterable<MlesMessage>>()

    expect(client.send).type.not.toBeCallableWith(5)
    expect(client.send).type.not.toBeCallableWith({ text: 'x' })
    expect(client.send).type.not.toBeCallableWith()
    expect(client).type.not.toHaveProperty('publish')
    // @ts-expect-error Property 'emit' is protected
    client.emit('error', new Error('x'))
    // @ts-expect-error Property 'socket' is private
    void client.socket
    // @ts-expect-error Cannot assign to 'state' because it is a read-only property.
    client.state = 'open'
    // @ts-expect-error Cannot assign to 'uid' because it is a read-only property.
    client.uid = 'v'
  })

  test('for await over the client yields MlesMessage', async () => {
    for await (const message of client) {
      expect(message).type.toBe<MlesMessage>()
    }
  })
})

describe('client events', () => {
  test('listeners get the payload of their event', () => {
    expect(client.on('message', (message) => {
      expect(message).type.toBe<MlesMessage>()
      expect(message.kind).type.toBe<'data' | 'join'>()
      expect(message.data).type.toBe<string | Uint8Array>()
      expect(message.binary).type.toBe<boolean>()
      expect(message.uid).type.toBe<string | undefined>()
    })).type.toBe<() => void>()
    client.on('join', (message) => { expect(message).type.toBe<MlesMessage>() })
    client.on('open', (event) => { expect(event).type.toBe<{ reconnect: boolean }>() })
    client.on('close', (event) => { expect(event).type.toBe<{ code: number, reason: string, willReconnect: boolean }>() })
    client.on('reconnecting', (event) => { expect(event).type.toBe<{ attempt: number, delayMs: number }>() })
    client.on('resync', (event) => { expect(event).type.toBe<{ resent: number }>() })
    client.on('error', (error) => { expect(error).type.toBe<Error>() })
    client.on('state', (state) => { expect(state).type.toBe<MlesClientState>() })
    client.once('message', (message) => { expect(message).type.toBe<MlesMessage>() })
    expect(client.once('open', () => {})).type.toBe<() => void>()
    expect(client.off('error', () => {})).type.toBe<void>()
    expect<MlesClientEvents['message']>().type.toBe<MlesMessage>()
  })

  test('a listener of the wrong payload type is refused', () => {
    expect(client.on).type.not.toBeCallableWith('message', (message: string) => message)
    expect(client.on).type.not.toBeCallableWith('error', (error: { code: number }) => error)
    expect(client.on).type.not.toBeCallableWith('state', (state: 'gone') => state)
    expect(client.on).type.not.toBeCallableWith('message')
    expect(client.once).type.not.toBeCallableWith('close', (event: { code: string }) => event)
  })
})

describe('the other client exports', () => {
  test('joinFrame and auth helpers', () => {
    expect(joinFrame({ uid: 'u', channel: 'c' })).type.toBe<string>()
    expect(joinFrame({ uid: 'u', channel: 'c', key: 'k', authWithoutKey: true })).type.toBe<string>()
    expect<JoinOptions>().type.toBe<{ uid: string, channel: string, key?: string, authWithoutKey?: boolean }>()
    expect(joinFrame).type.not.toBeCallableWith({ uid: 'u' })
    expect(joinFrame).type.not.toBeCallableWith({ uid: 'u', channel: 'c', key: 5 })
    expect(joinFrame).type.not.toBeCallableWith('u', 'c')

    expect(computeAuth('u', 'c', 'k')).type.toBe<string>()
    expect(sipHash24Hex('x')).type.toBe<string>()
    expect(sipHash24Hex(new Uint8Array(1))).type.toBe<string>()
    expect(frameHash('x')).type.toBe<string>()
    expect(frameText({ kind: 'data', data: 'x', binary: false })).type.toBe<string>()
    expect(frameText).type.not.toBeCallableWith('x')
    expect(MLES_PROTOCOL).type.toBe<'mles-websocket'>()
  })

  test('FrameDeduplicator', () => {
    const dedup = new FrameDeduplicator(100)
    expect(dedup.add('hash')).type.toBe<boolean>()
    expect(dedup.has('hash')).type.toBe<boolean>()
    expect(dedup.size).type.toBe<number>()
    expect(dedup.capacity).type.toBe<number>()
    expect(FrameDeduplicator).type.not.toBeConstructableWith()
    expect(FrameDeduplicator).type.not.toBeConstructableWith('100')
    expect(dedup.add).type.not.toBeCallableWith(new Uint8Array(1))
  })

  test('MlesProxy', () => {
    const proxy = new MlesProxy({ servers: ['wss://a/', 'wss://b/'], uid: 'p', channel: 'c', key: 'k', dedup: 10 })
    expect(proxy.clients).type.toBe<MlesClient[]>()
    expect(proxy.forwarded).type.toBe<number[][]>()
    expect(proxy.ready).type.toBe<Promise<void>>()
    expect(proxy.close()).type.toBe<Promise<void>>()
    proxy.on('forward', (event) => { expect(event).type.toBe<{ from: number, to: number, message: MlesMessage }>() })
    proxy.on('link', (event) => { expect(event).type.toBe<{ server: number, state: MlesClientState }>() })
    proxy.on('error', (event) => { expect(event).type.toBe<{ server: number, error: Error }>() })

    expect(MlesProxy).type.not.toBeConstructableWith({ uid: 'p', channel: 'c' })
    expect(MlesProxy).type.not.toBeConstructableWith({ servers: 'wss://a/', uid: 'p', channel: 'c' })
    // resync is always on for the proxy's links: not an option.
    expect(MlesProxy).type.not.toBeConstructableWith({ servers: ['wss://a/'], uid: 'p', channel: 'c', resync: false })
    expect<MlesProxyOptions>().type.not.toHaveProperty('resync')
  })

  test('MlesMqttBridge', () => {
    const bridge = new MlesMqttBridge({ server: 'wss://a/', broker: 'mqtt://b', uid: 'b', channel: 'c', topic: 't' })
    expect(bridge.mles).type.toBe<MlesClient>()
    expect(bridge.forwarded).type.toBe<{ toMqtt: number, toMles: number }>()
    expect(bridge.ready).type.toBe<Promise<void>>()
    expect(bridge.close()).type.toBe<Promise<void>>()
    bridge.on('forward', (event) => { expect(event).type.toBe<{ to: 'mqtt' | 'mles', bytes: number }>() })
    bridge.on('error', (error) => { expect(error).type.toBe<Error>() })

    expect(MlesMqttBridge).type.not.toBeConstructableWith({ server: 'wss://a/', uid: 'b', channel: 'c' })
    expect(MlesMqttBridge).type.not.toBeConstructableWith({ server: 'wss://a/', broker: 1883, uid: 'b', channel: 'c' })
  })
})

describe('events and WebSocket implementations', () => {
  // The event maps are closed: a misspelt event would otherwise compile and its listener never run.
  test('unknown event names are refused', () => {
    expect(client.on).type.not.toBeCallableWith('mesage', () => {})
    expect(client.on).type.not.toBeCallableWith(1, () => {})
    expect(client.once).type.not.toBeCallableWith('opened', () => {})
    expect(new MlesProxy({ servers: ['a', 'b'], uid: 'p', channel: 'c' }).on).type.not.toBeCallableWith('forwarded', () => {})
  })

  // ws's handlers take its own Event types; WebSocketLike's `never` parameters accept them.
  test('the WebSocket option takes ws', () => {
    expect(WebSocket).type.toBeAssignableTo<WebSocketFactory>()
    expect(new WebSocket(url)).type.toBeAssignableTo<WebSocketLike>()
    expect(MlesClient).type.toBeConstructableWith(url, { uid: 'u', channel: 'c', WebSocket })
  })
})
