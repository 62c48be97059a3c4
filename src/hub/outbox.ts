import type { Socket } from 'node:net'

/** What the outbox needs of a recipient. */
export interface Recipient {
  /** The connection's TCP (or TLS) socket. */
  readonly socket: Socket
  /** Whether this recipient is in the outbox's corked list for the current turn. */
  corked: boolean
  /** Queued bytes past which a write is refused (slow consumer). */
  bufferLimit: number
}

/**
 * Writes pre-encoded frames straight to sockets, coalescing every write made
 * to one socket within an event-loop turn: the first write corks the socket,
 * a single `setImmediate` uncorks all of them, so a burst of fan-out becomes
 * one `writev` per socket instead of one syscall per frame.
 */
export class Outbox {
  private readonly corkedRecipients: Recipient[] = []
  private flushScheduled = false

  /**
   * Queues `wire` for `recipient` unless its unsent bytes would pass its
   * `bufferLimit`; returns false then and writes nothing, so a client that
   * stops reading can hold at most its limit of server memory.
   */
  write (recipient: Recipient, wire: Buffer): boolean {
    const socket = recipient.socket
    if (socket.writableLength + wire.length > recipient.bufferLimit) return false
    this.writeUnbounded(recipient, wire)
    return true
  }

  /** Queues `wire` without the buffer check (history replay, whose size is bounded by the history itself). */
  writeUnbounded (recipient: Recipient, wire: Buffer): void {
    if (!recipient.corked) {
      recipient.corked = true
      recipient.socket.cork()
      this.corkedRecipients.push(recipient)
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(this.flush)
      }
    }
    recipient.socket.write(wire)
  }

  /** Uncorks every socket written this turn. */
  readonly flush = (): void => {
    this.flushScheduled = false
    const recipients = this.corkedRecipients
    for (let i = 0; i < recipients.length; i++) {
      const recipient = recipients[i]
      recipient.corked = false
      recipient.socket.uncork()
    }
    recipients.length = 0
  }
}
