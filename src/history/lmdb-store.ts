import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { open, type Database, type RangeOptions, type RootDatabase } from 'lmdb'
import type { HistoryStore } from './store.js'

/** The database file inside `historyDir` (LMDB adds `history.mdb-lock` beside it). */
export const HISTORY_FILE = 'history.mdb'

/** Failures in a row are reported once, then at most this often while they last. */
const REPORT_EVERY_MS = 60_000

export interface LmdbHistoryStoreOptions {
  /** Directory holding the database; created if missing. */
  dir: string
  /** Time between writes of the frames recorded since the last one. At least 1. */
  flushIntervalMs: number
  /** A channel whose last write is older than this when the store opens is dropped with its frames. */
  channelIdleMs: number
  /**
   * A write failed (disk full, I/O error…); its frames stay recorded and are
   * tried again at the next write. Called for the first failure of a run, then
   * at most once a minute while failures last; `failures` counts all of them.
   */
  onWriteError?: (error: Error, failures: number) => void
  /** Writes succeed again after `failures` failed ones. */
  onRecovered?: (failures: number) => void
}

/** What the store keeps about a channel: `{ name, lastActivity }` under its id. */
interface StoredChannel {
  name: string
  /** Epoch ms of the last write of one of its frames. */
  lastActivity: number
}

/**
 * One channel in the store. Its frames are numbered by `seq`, one after
 * another; the stored ones are at or after `storedFrom` and before
 * `pendingFrom`, the recorded-but-unwritten ones follow in `pending`.
 */
interface ChannelState {
  readonly id: number
  readonly name: string
  /** No stored frame has a lower seq (some above it may already be trimmed). */
  storedFrom: number
  /** Seq of `pending[0]`. */
  pendingFrom: number
  /** Seq the next frame gets. */
  nextSeq: number
  /** Wire frames recorded since the last successful write, oldest first: views the ring never changes. */
  pending: Buffer[]
  /** Frames the channel's ring held after its last append; older ones go. Infinity until the first append. */
  kept: number
}

/** One channel's part in a write: what to mark written once it has committed. */
interface WrittenChannel {
  state: ChannelState
  /** Frames below this seq were written. */
  upTo: number
  /** Frames below this seq were deleted. */
  cutoff: number
}

/**
 * Channel history on disk in LMDB (lmdb-js), for `historyDir`.
 *
 * Frames are keyed `[channelId, seq]` — two numbers — rather than by channel
 * name: a name is any ASCII string of any length, NUL included, which
 * ordered-binary array keys cannot hold (NUL is their delimiter) and LMDB's
 * key size (under 2 KB) may not. The `channels` database maps each id to its
 * name and last activity and is read whole when the store opens.
 *
 * `append` only records the frame; a timer writes everything recorded in one
 * atomic batch every `flushIntervalMs`, deleting the frames that fell out of
 * the channel's history. After a crash the last interval or so may be
 * missing, never a frame in the middle: each batch commits whole.
 */
export class LmdbHistoryStore implements HistoryStore {
  private readonly root: RootDatabase
  private readonly frames: Database<Buffer, [number, number]>
  private readonly meta: Database<StoredChannel, number>
  private readonly channels = new Map<string, ChannelState>()
  /** Channels with frames recorded and not yet written. */
  private readonly dirty = new Set<ChannelState>()
  /** Ids whose frames and record are to be deleted. */
  private forgotten: number[] = []
  private nextId = 1
  private readonly timer: NodeJS.Timeout
  private writing: Promise<void> | null = null
  private closing: Promise<void> | null = null
  private failures = 0
  private failuresInRun = 0
  private lastReport = 0

  /** Opens (creating if needed) the store in `options.dir`; throws if it cannot. Synchronous. */
  constructor (private readonly options: LmdbHistoryStoreOptions) {
    mkdirSync(options.dir, { recursive: true })
    this.root = open({
      path: join(options.dir, HISTORY_FILE),
      noSubdir: true,
      compression: false,
      maxDbs: 4,
      // Writes go only through batch(): atomic, and free of the internal
      // event-turn promise that lmdb-js leaves unhandled when a commit fails.
      eventTurnBatching: false
    })
    try {
      this.frames = this.root.openDB<Buffer, [number, number]>({ name: 'frames', encoding: 'binary' })
      this.meta = this.root.openDB<StoredChannel, number>({ name: 'channels' })
      this.loadChannels(Date.now())
    } catch (error) {
      void this.root.close()
      throw error
    }
    this.timer = setInterval(() => {
      if (this.writing === null && this.hasPending()) this.flush().catch(() => {})
    }, options.flushIntervalMs)
    this.timer.unref()
  }

  /** Failed writes since the store opened. */
  get writeFailures (): number {
    return this.failures
  }

  load (channel: string): Buffer[] {
    const state = this.channels.get(channel)
    if (state === undefined || this.closing !== null) return []
    const wires: Buffer[] = []
    const from = Math.max(state.storedFrom, state.nextSeq - state.kept)
    if (from < state.pendingFrom) {
      // getRange hands out copies, so the hub may keep them.
      for (const { value } of this.frames.getRange({ start: [state.id, from], end: [state.id, state.pendingFrom] })) wires.push(value)
    }
    for (let i = Math.max(0, from - state.pendingFrom); i < state.pending.length; i++) wires.push(state.pending[i])
    return wires
  }

  append (channel: string, wire: Buffer, kept: number): void {
    if (this.closing !== null) return
    let state = this.channels.get(channel)
    if (state === undefined) {
      state = { id: this.nextId++, name: channel, storedFrom: 0, pendingFrom: 0, nextSeq: 0, pending: [], kept: Infinity }
      this.channels.set(channel, state)
    }
    state.pending.push(wire)
    state.nextSeq++
    state.kept = kept
    // Frames already out of the ring are never written.
    while (state.pending.length > kept) {
      state.pending.shift()
      state.pendingFrom++
    }
    this.dirty.add(state)
  }

  forget (channel: string): void {
    const state = this.channels.get(channel)
    if (state === undefined) return
    this.channels.delete(channel)
    this.dirty.delete(state)
    this.forgotten.push(state.id)
  }

  /** Writes everything recorded so far; rejects with the cause if that write fails (its frames stay recorded). */
  async flush (): Promise<void> {
    while (this.writing !== null) await this.writing.catch(() => {})
    if (!this.hasPending()) return
    this.writing = this.write()
    try {
      await this.writing
    } finally {
      this.writing = null
    }
  }

  close (): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown()
    return this.closing
  }

  private async shutdown (): Promise<void> {
    clearInterval(this.timer)
    try {
      await this.flush()
    } catch {
      // Reported by write(); what could not be written is lost with the process.
    }
    await this.root.close()
  }

  private hasPending (): boolean {
    return this.dirty.size > 0 || this.forgotten.length > 0
  }

  /** Reads every channel record; drops idle ones and finds where each channel's frames start and end. */
  private loadChannels (now: number): void {
    for (const { key: id, value } of this.meta.getRange()) {
      this.nextId = Math.max(this.nextId, id + 1)
      const first = this.firstKey({ start: [id], end: [id + 1], limit: 1 })
      const last = this.firstKey({ start: [id + 1], end: [id], reverse: true, limit: 1 })
      if (first === undefined || last === undefined || now - value.lastActivity >= this.options.channelIdleMs || this.channels.has(value.name)) {
        this.forgotten.push(id)
        continue
      }
      const nextSeq = last[1] + 1
      this.channels.set(value.name, { id, name: value.name, storedFrom: first[1], pendingFrom: nextSeq, nextSeq, pending: [], kept: Infinity })
    }
  }

  private firstKey (range: RangeOptions): [number, number] | undefined {
    for (const key of this.frames.getKeys(range)) return key
    return undefined
  }

  /** One batch: the deletions of forgotten channels, then every dirty channel's new frames and trimming. */
  private async write (): Promise<void> {
    const forgotten = this.forgotten
    this.forgotten = []
    const written: WrittenChannel[] = []
    const now = Date.now()
    const committed = this.root.batch(() => {
      for (const id of forgotten) {
        for (const key of this.frames.getKeys({ start: [id], end: [id + 1] })) void this.frames.remove(key)
        void this.meta.remove(id)
      }
      for (const state of this.dirty) {
        const cutoff = Math.max(state.storedFrom, state.nextSeq - state.kept)
        for (let seq = state.storedFrom; seq < cutoff; seq++) void this.frames.remove([state.id, seq])
        for (let i = Math.max(0, cutoff - state.pendingFrom); i < state.pending.length; i++) {
          void this.frames.put([state.id, state.pendingFrom + i], state.pending[i])
        }
        void this.meta.put(state.id, { name: state.name, lastActivity: now })
        written.push({ state, upTo: state.nextSeq, cutoff })
      }
    })
    this.dirty.clear()
    try {
      await committed
    } catch (error) {
      const cause = await commitCause(error)
      this.forgotten.unshift(...forgotten)
      for (const { state } of written) {
        if (this.channels.get(state.name) === state) this.dirty.add(state)
      }
      this.reportFailure(cause)
      throw cause
    }
    for (const { state, upTo, cutoff } of written) {
      state.storedFrom = Math.max(state.storedFrom, cutoff)
      const done = Math.min(state.pending.length, Math.max(0, upTo - state.pendingFrom))
      state.pending.splice(0, done)
      state.pendingFrom += done
    }
    if (this.failuresInRun > 0) {
      this.options.onRecovered?.(this.failuresInRun)
      this.failuresInRun = 0
    }
  }

  private reportFailure (error: Error): void {
    this.failures++
    this.failuresInRun++
    const now = Date.now()
    if (this.failuresInRun === 1 || now - this.lastReport >= REPORT_EVERY_MS) {
      this.lastReport = now
      this.options.onWriteError?.(error, this.failures)
    }
  }
}

/**
 * The real error behind a failed lmdb-js commit: the rejection is a generic
 * "Commit failed" whose `commitError` promise rejects with the cause, and
 * which nothing else handles.
 */
async function commitCause (error: unknown): Promise<Error> {
  const commitError = (error as { commitError?: unknown } | null)?.commitError
  if (commitError instanceof Promise) {
    // It is settled by now; the race only guards against waiting forever if it is not.
    const cause: unknown = await Promise.race([
      commitError.then(() => null, (reason: unknown) => reason),
      new Promise<null>((resolve) => { setImmediate(resolve, null) })
    ])
    if (cause instanceof Error) return cause
  }
  return error instanceof Error ? error : new Error(String(error))
}
