import { HistoryRing } from '../history/ring.js'

/** What a channel needs of a member. */
export interface ChannelMember {
  readonly uid: string
  /** Position in `Channel.members`, kept by the channel for O(1) removal. */
  memberIndex: number
  /** Whether the member's connection is open (a closing one no longer blocks its uid). */
  isOpen: () => boolean
  /** A client of the legacy v1 TCP protocol: it gets frames as v1 `Msg` frames (see `V1Translator`). */
  readonly speaksV1: boolean
  /** Cluster mode: the member gets frames only in cluster order (from their echoes), until this node's frames in flight have landed. */
  catchingUp: boolean
  /** Cluster mode: the hub's sequence number of the member's join frame until it is placed in the cluster order (its replay waits for it); 0 after. */
  joinSequence: number
}

/** A frame of a channel as server-side subscribers see it. */
export interface MlesFrame {
  readonly channel: string
  /** The sender's uid; `null` for a frame published with `app.mles.publish`. */
  readonly uid: string | null
  /** The payload. Shared with the history and other subscribers: read it, do not modify it. */
  readonly data: Buffer
  readonly isBinary: boolean
  /** True for a join frame: stored in the history, never sent to current members (SPEC §2). */
  readonly join: boolean
}

/** Called with every frame of a subscribed channel; a throw or a rejected promise is logged, nothing else is disturbed. */
export type MlesFrameListener = (frame: MlesFrame) => void | Promise<void>

/** Members past which uid lookups use a Map instead of scanning. */
const UID_INDEX_THRESHOLD = 16

/** One channel: its members, its history, its server-side subscribers. */
export class Channel<M extends ChannelMember = ChannelMember> {
  /** Members in no particular order; a dense array so fan-out is a plain loop. */
  readonly members: M[] = []
  /** uid → member, built only once a channel is large: a small Map costs more than a scan. */
  private byUid: Map<string, M> | null = null
  listeners: MlesFrameListener[] | null = null
  lastActivity: number
  /** Cluster mode: the hub's sequence number of the last frame published here, and of the last one back from the cluster. */
  lastLocalSequence = 0
  settledSequence = 0
  /** Cluster mode: members with `catchingUp` set. */
  catchingUp = 0
  /** Members that speak v1. */
  v1Members = 0
  /** Cluster mode: members whose join frame is on its way through the cluster, by its sequence number. */
  private pendingJoins: Map<number, M> | null = null

  constructor (
    readonly name: string,
    readonly history: HistoryRing,
    now: number
  ) {
    this.lastActivity = now
  }

  memberByUid (uid: string): M | undefined {
    if (this.byUid !== null) return this.byUid.get(uid)
    const members = this.members
    for (let i = 0; i < members.length; i++) {
      if (members[i].uid === uid) return members[i]
    }
    return undefined
  }

  add (member: M): void {
    if (member.speaksV1) this.v1Members++
    member.memberIndex = this.members.length
    this.members.push(member)
    if (this.byUid !== null) {
      this.byUid.set(member.uid, member)
    } else if (this.members.length > UID_INDEX_THRESHOLD) {
      this.byUid = new Map(this.members.map((each) => [each.uid, each]))
    }
  }

  /** Removes `member` by moving the last member into its slot. */
  remove (member: M): boolean {
    const index = member.memberIndex
    if (index < 0 || this.members[index] !== member) return false
    const last = this.members.pop() as M
    if (last !== member) {
      this.members[index] = last
      last.memberIndex = index
    }
    member.memberIndex = -1
    if (member.speaksV1) this.v1Members--
    if (member.catchingUp) {
      member.catchingUp = false
      this.catchingUp--
    }
    if (member.joinSequence !== 0) {
      this.pendingJoins?.delete(member.joinSequence)
      member.joinSequence = 0
    }
    if (this.byUid !== null && this.byUid.get(member.uid) === member) this.byUid.delete(member.uid)
    return true
  }

  startCatchUp (member: M): void {
    if (member.catchingUp) return
    member.catchingUp = true
    this.catchingUp++
  }

  /** Ends the catch-up of every member but those whose join is still pending. */
  endCatchUp (): void {
    const members = this.members
    let remaining = 0
    for (let i = 0; i < members.length; i++) {
      if (members[i].joinSequence === 0) members[i].catchingUp = false
      else remaining++
    }
    this.catchingUp = remaining
  }

  /** Cluster mode: `member` gets nothing until its join frame, numbered `sequence`, is placed in the cluster order. */
  awaitJoin (member: M, sequence: number): void {
    this.startCatchUp(member)
    member.joinSequence = sequence
    this.pendingJoins ??= new Map()
    this.pendingJoins.set(sequence, member)
  }

  /** The member whose join frame is `sequence`, now placed: it no longer waits (it may still be catching up). */
  joinPlaced (sequence: number): M | undefined {
    const member = this.pendingJoins?.get(sequence)
    if (member === undefined) return undefined
    this.pendingJoins?.delete(sequence)
    member.joinSequence = 0
    return member
  }

  /** Whether nothing but idle history keeps this channel. */
  isUnused (): boolean {
    return this.members.length === 0 && this.listeners === null
  }
}
