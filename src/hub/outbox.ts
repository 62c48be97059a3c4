import type { Socket } from 'node:net'

/** What the outbox writes to: a connection's TCP (or TLS) socket, or something that frames for one. */
export type RecipientSocket = Pick<Socket, 'write' | 'cork' | 'uncork' | 'writableLength'>

/** What the outbox needs of a recipient. */
export interface Recipient {
  readonly socket: RecipientSocket
  /** Whether this recipient is in the outbox's corked list for the current turn. */
  corked: boolean
  /** Bytes queued from earlier turns past which writes are refused (slow consumer). */
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
   * Queues `wire` for `recipient`, unless the bytes it still had queued from
   * earlier turns pass its `bufferLimit`: then nothing is written and false is
   * returned. Checking once per turn, before corking, keeps a healthy client
   * from being dropped for a burst that arrives within one turn, while a client
   * that stops reading holds at most its limit plus one turn of frames.
   */
  write (recipient: Recipient, wire: Buffer): boolean {
    if (!recipient.corked) {
      if (recipient.socket.writableLength > recipient.bufferLimit) return false
      this.cork(recipient)
    }
    recipient.socket.write(wire)
    return true
  }

  /** Queues `wire` without the buffer check (history replay, whose size the history itself bounds). */
  writeUnbounded (recipient: Recipient, wire: Buffer): void {
    if (!recipient.corked) this.cork(recipient)
    recipient.socket.write(wire)
  }

  private cork (recipient: Recipient): void {
    recipient.corked = true
    recipient.socket.cork()
    this.corkedRecipients.push(recipient)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flush)
    }
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
