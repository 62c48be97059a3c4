/**
 * Where a single node's channel history outlives the process (option
 * `historyDir`). The in-memory ring stays what replay and fan-out read; a store
 * mirrors it: the hub loads a channel from it when it first needs the channel
 * and reports every frame it appends, and the store writes them in batches.
 */
export interface HistoryStore {
  /** The wire frames of `channel` kept by an earlier run, oldest first. Synchronous: the hub calls it inline. */
  load: (channel: string) => Buffer[]
  /**
   * Records a frame just appended to the channel's ring. `wire` is the
   * encoded frame (a view the ring never changes, so it may be kept until
   * written); `kept` is how many frames the ring now holds, so older ones may
   * go from the store.
   */
  append: (channel: string, wire: Buffer, kept: number) => void
  /** The hub forgot the channel (idle expiry): its stored history goes too. */
  forget: (channel: string) => void
  /** Writes everything recorded so far. */
  flush: () => Promise<void>
  /** Flushes and releases the store; nothing may be called after it. */
  close: () => Promise<void>
}
