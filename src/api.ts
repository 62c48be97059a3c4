import type { AddressInfo } from 'node:net'
import type { MlesFrameListener } from './hub/channel.js'
import type { MlesMetricsSnapshot } from './metrics.js'

// The public types of `app.mles`, apart from the server that implements them,
// so the published declarations reach no optional package's types.

export interface MlesHistoryFrame {
  /** A copy of the stored payload. */
  data: Buffer
  isBinary: boolean
}

export interface MlesChannelInfo {
  name: string
  /** Connected members. */
  members: number
  /** Frames held in the history. */
  historySize: number
  /** Wire bytes of that history; their sum over the channels is `metrics().history_bytes`, bounded by `historyTotalBytes`. */
  historyBytes: number
}

export interface MlesPublishOptions {
  /** Send as a binary frame. Default: true for a Buffer/Uint8Array, false for a string. */
  binary?: boolean
}

/** A member entering (`join`) or leaving (`leave`) a channel of this node. */
export interface MlesMemberEvent {
  readonly channel: string
  readonly uid: string
  /** The member's address as Fastify sees it (`request.ip`, so `trustProxy` applies); a v1 client's TCP peer. */
  readonly ip: string
  /** The `Origin` header of its upgrade; null for non-browser and v1 clients. */
  readonly origin: string | null
}

export type MlesMemberEventName = 'join' | 'leave'

/** Called with each join or leave; a throw or a rejected promise is logged, nothing else is disturbed. */
export type MlesMemberListener = (event: MlesMemberEvent) => void | Promise<void>

/** The `app.mles` decorator: server-side access to the Mles channels of this app. */
export interface MlesApi {
  /**
   * Publishes a server-originated frame: delivered to every member of `channel`
   * and stored in its history, like a member's frame. A string is sent as text,
   * bytes as binary (see `options.binary`).
   */
  publish: (channel: string, data: string | Uint8Array, options?: MlesPublishOptions) => void
  /** Calls `listener` with every later frame of `channel`, join frames included; returns the unsubscribe function. */
  subscribe: (channel: string, listener: MlesFrameListener) => () => void
  /** The stored history of `channel`, oldest first; empty for an unknown channel. */
  history: (channel: string) => MlesHistoryFrame[]
  /** Where the v1 TCP listener (option `v1`) is bound; null without it. */
  v1Address: () => AddressInfo | null
  /**
   * Calls `listener` when a member of this node has entered a channel (after
   * its history replay) or left it. Returns the function that removes it.
   */
  on: (event: MlesMemberEventName, listener: MlesMemberListener) => () => void
  /** Removes a listener added with `on`. */
  off: (event: MlesMemberEventName, listener: MlesMemberListener) => void
  /**
   * The uids connected to `channel` now, sorted; with `redis`, on every node
   * of the cluster (read from Redis; this node's alone while Redis is away).
   */
  members: (channel: string) => Promise<string[]>
  /** Every channel held, with its member count and the size of its history. */
  channels: () => MlesChannelInfo[]
  /** A snapshot of the counters. */
  metrics: () => MlesMetricsSnapshot
  /** Closes every connection with 1001 and stops all timers. Called by `app.close()`. */
  close: () => Promise<void>
}
