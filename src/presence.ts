import type { FastifyBaseLogger } from 'fastify'
import type { MlesMemberEvent, MlesMemberEventName, MlesMemberListener } from './api.js'

/** What the join and leave events tell of a member connection (WebSocket or v1). */
export interface PresentMember {
  readonly uid: string
  /** The channel entered. */
  readonly channelName: string
  readonly ip: string
  readonly origin: string | null
}

/** The app's `join` and `leave` listeners (`app.mles.on`): called in order; a throw or rejection is logged and changes nothing. */
export class Presence {
  private joinListeners: MlesMemberListener[] = []
  private leaveListeners: MlesMemberListener[] = []

  constructor (private readonly log: FastifyBaseLogger) {}

  on (event: MlesMemberEventName, listener: MlesMemberListener): () => void {
    // Copy on write: a listener may remove itself, or another, while events are dispatched.
    if (event === 'join') this.joinListeners = [...this.joinListeners, listener]
    else this.leaveListeners = [...this.leaveListeners, listener]
    return () => { this.off(event, listener) }
  }

  off (event: MlesMemberEventName, listener: MlesMemberListener): void {
    const without = (listeners: MlesMemberListener[]): MlesMemberListener[] => {
      const index = listeners.lastIndexOf(listener)
      return index < 0 ? listeners : [...listeners.slice(0, index), ...listeners.slice(index + 1)]
    }
    if (event === 'join') this.joinListeners = without(this.joinListeners)
    else this.leaveListeners = without(this.leaveListeners)
  }

  joined (member: PresentMember): void {
    if (this.joinListeners.length > 0) this.emit('join', this.joinListeners, member)
  }

  left (member: PresentMember): void {
    if (this.leaveListeners.length > 0) this.emit('leave', this.leaveListeners, member)
  }

  private emit (name: MlesMemberEventName, listeners: MlesMemberListener[], member: PresentMember): void {
    const event: MlesMemberEvent = Object.freeze({ channel: member.channelName, uid: member.uid, ip: member.ip, origin: member.origin })
    for (const listener of listeners) {
      try {
        const done = listener(event)
        if (done instanceof Promise) done.catch((error: unknown) => { this.listenerFailed(name, error) })
      } catch (error) {
        this.listenerFailed(name, error)
      }
    }
  }

  private listenerFailed (name: MlesMemberEventName, error: unknown): void {
    this.log.error({ err: error }, `mles: a '${name}' listener threw`)
  }
}
