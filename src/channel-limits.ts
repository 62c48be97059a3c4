import type { Hub, HubMember } from './hub/hub.js'
import { addressKey, PerIpLimiter } from './ip-limiter.js'
import type { Metrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { ThrottledLog } from './throttled-log.js'

/** Why a join may not create its channel now: the server holds `maxChannels`, or its address made `perIpChannelLimit` this window. */
export type ChannelRefusal = 'too many channels' | 'channel rate'

/**
 * The limits on creating channels (options `maxChannels`,
 * `perIpChannelLimit`), asked by every join — WebSocket or v1 — before it
 * enters: joining a channel this node holds is never refused.
 */
export class ChannelLimits {
  private readonly perIp: PerIpLimiter | null

  constructor (
    private readonly options: ResolvedOptions,
    private readonly hub: Hub<HubMember>,
    private readonly counters: Metrics,
    private readonly notices: ThrottledLog
  ) {
    this.perIp = options.perIpChannelLimit === 0 ? null : new PerIpLimiter(options.perIpChannelLimit, options.perIpWindowMs)
  }

  /** Null when a join from `ip` may go into channel `name`; otherwise why not (and it is counted and logged). */
  refusal (name: string, ip: string): ChannelRefusal | null {
    if (this.hub.channel(name) !== undefined) return null
    if (this.perIp !== null) {
      const key = addressKey(ip, this.options.ipv6PrefixLength)
      if (this.perIp.take(key, Date.now()) > 0) {
        this.counters.rejectedChannelRate++
        this.notices.write('warn', 'channel-rate', { ip: key }, `mles: an address created ${this.options.perIpChannelLimit} channels within ${this.options.perIpWindowMs / 1000} s (perIpChannelLimit); refusing its new channels with 1013`)
        return 'channel rate'
      }
    }
    if (!this.hub.roomForChannel()) {
      this.counters.rejectedMaxChannels++
      this.notices.write('warn', 'max-channels', { channels: this.hub.channelCount }, `mles: ${this.hub.channelCount} channels held, every one with members (maxChannels ${this.options.maxChannels}); refusing joins to new channels with 1013`)
      return 'too many channels'
    }
    return null
  }

  /** Forgets the per-address windows that have ended. */
  sweep (now: number): void {
    this.perIp?.sweep(now)
  }
}
