/** A small typed event emitter that runs the same in Node and in browsers. */
/** `Events` maps each event name to its payload; other names do not compile. */
export class TypedEmitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(payload: never) => void>>()

  /** Calls `listener` for every `event`; returns a function that removes it. */
  on<E extends keyof Events> (event: E, listener: (payload: Events[E]) => void): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(event, set)
    }
    set.add(listener as (payload: never) => void)
    return () => { this.off(event, listener) }
  }

  /** Calls `listener` for the next `event` only. */
  once<E extends keyof Events> (event: E, listener: (payload: Events[E]) => void): () => void {
    const remove = this.on(event, (payload) => {
      remove()
      listener(payload)
    })
    return remove
  }

  off<E extends keyof Events> (event: E, listener: (payload: Events[E]) => void): void {
    this.listeners.get(event)?.delete(listener as (payload: never) => void)
  }

  protected emit<E extends keyof Events> (event: E, payload: Events[E]): void {
    const set = this.listeners.get(event)
    if (set === undefined) return
    for (const listener of [...set]) (listener as (payload: Events[E]) => void)(payload)
  }

  protected listenerCount (event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0
  }
}
