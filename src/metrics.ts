/**
 * A point-in-time copy of the server's counters. The first seven are the
 * reference server's metrics (SPEC §8) under the same names; the rest break
 * drops and errors down by cause.
 */
export interface MlesMetricsSnapshot {
  /** Open WebSocket connections, joined or still awaiting their join frame. */
  active_connections: number
  /** Frames delivered to clients: fan-out and history replay. */
  total_messages_sent: number
  /** Data frames received from joined clients (join frames not included). */
  total_messages_received: number
  /** Channels held: with members, history or server-side subscribers. */
  total_channels: number
  /** Refused joins (bad header, failed auth, duplicate uid) and WebSocket protocol errors. */
  total_errors: number
  /** Connections the server closed for cause: join timeout, keep-alive timeout, slow consumer. */
  total_dropped_connections: number
  /** Upgrades (and HTTP API requests without the right key) refused with 429 by the per-IP limit. */
  dropped_by_ip: number
  /** Frames over `maxMessageBytes`, dropped. */
  dropped_messages_oversize: number
  /** Frames over `messagesPerSecond`, dropped. */
  dropped_messages_rate: number
  /** Members disconnected because their unsent data passed `maxBufferedBytes`. */
  dropped_slow_consumers: number
  /** Connections closed after `maxMissedPongs` unanswered pings. */
  dropped_keepalive: number
  /** Connections closed for sending no join frame within `joinTimeoutMs`. */
  dropped_join_timeout: number
  /** Refused joins by cause. */
  rejected_headers: number
  rejected_auth: number
  rejected_duplicates: number
  /** Joins refused by the `authorize` hook: `false`, a uid other than the one allowed, or no answer in time. */
  rejected_authorize: number
  /** Joins closed with 1011 because `authorize` threw, rejected or answered something that is not an answer. */
  authorize_errors: number
  /** Upgrades refused with 403 by the origin policy (`allowedOrigins`, `requireOrigin`). */
  rejected_origin: number
  /** Frames of read-only members (`authorize` answered `publish: false`), dropped. */
  dropped_messages_readonly: number
  /** Wire bytes of history held over every channel (bounded by `historyTotalBytes`). */
  history_bytes: number
  /** Frames of history evicted to stay within `historyTotalBytes` (or not kept for want of room), and those of channels forgotten at `maxChannels`. */
  history_evicted_frames: number
  /** Connections refused at `maxConnections`: upgrades answered 503, v1 connections closed. */
  rejected_max_connections: number
  /** Joins closed with 1013 because they would create a channel past `maxChannels` while every channel has members. */
  rejected_max_channels: number
  /** Joins closed with 1013 because their address had created `perIpChannelLimit` channels in the window. */
  rejected_channel_rate: number
  /** Cluster mode (`redis`): failed Redis commands and connection errors. */
  cluster_errors: number
  /** Cluster mode: times the connection to Redis was lost. */
  cluster_outages: number
  /** Cluster mode: frames that could not go to Redis at once: delivered and kept here, and sent from the outbox once Redis is back. */
  cluster_unsent_frames: number
  /** Cluster mode: frames dropped from a full outbox (`redis.outboxBytes`): members on other nodes miss them. */
  cluster_dropped_frames: number
  /** Cluster mode: channels whose history this node wrote back to a Redis that had lost it. */
  cluster_restored_channels: number
  /** Cluster mode: times this node came back to a channel whose stream no longer held every frame it had missed (more than `historyLimit + redis.catchUpFrames` were written meanwhile): its members missed some. */
  cluster_unfilled_gaps: number
  /** Cluster mode: times an entry's predecessor had not come by notice or answer, so the channel's stream was read to fill the link (a registration that lapsed, or a lost notice). */
  cluster_gap_reads: number
}

/** The server's counters: plain fields, bumped in place on the hot path. */
export class Metrics {
  totalMessagesSent = 0
  totalMessagesReceived = 0
  protocolErrors = 0
  droppedByIp = 0
  droppedOversize = 0
  droppedRate = 0
  droppedSlowConsumers = 0
  droppedKeepalive = 0
  droppedJoinTimeout = 0
  rejectedHeaders = 0
  rejectedAuth = 0
  rejectedDuplicates = 0
  rejectedAuthorize = 0
  rejectedOrigin = 0
  authorizeErrors = 0
  droppedReadonly = 0
  historyEvictedFrames = 0
  rejectedMaxConnections = 0
  rejectedMaxChannels = 0
  rejectedChannelRate = 0
  clusterErrors = 0
  clusterOutages = 0
  clusterUnsentFrames = 0
  clusterDroppedFrames = 0
  clusterRestoredChannels = 0
  clusterUnfilledGaps = 0
  clusterGapReads = 0

  snapshot (activeConnections: number, channels: number, historyBytes: number): MlesMetricsSnapshot {
    return {
      active_connections: activeConnections,
      total_messages_sent: this.totalMessagesSent,
      total_messages_received: this.totalMessagesReceived,
      total_channels: channels,
      total_errors: this.rejectedHeaders + this.rejectedAuth + this.rejectedDuplicates + this.rejectedAuthorize + this.authorizeErrors + this.protocolErrors,
      total_dropped_connections: this.droppedSlowConsumers + this.droppedKeepalive + this.droppedJoinTimeout,
      dropped_by_ip: this.droppedByIp,
      dropped_messages_oversize: this.droppedOversize,
      dropped_messages_rate: this.droppedRate,
      dropped_slow_consumers: this.droppedSlowConsumers,
      dropped_keepalive: this.droppedKeepalive,
      dropped_join_timeout: this.droppedJoinTimeout,
      rejected_headers: this.rejectedHeaders,
      rejected_auth: this.rejectedAuth,
      rejected_duplicates: this.rejectedDuplicates,
      rejected_authorize: this.rejectedAuthorize,
      authorize_errors: this.authorizeErrors,
      rejected_origin: this.rejectedOrigin,
      dropped_messages_readonly: this.droppedReadonly,
      history_bytes: historyBytes,
      history_evicted_frames: this.historyEvictedFrames,
      rejected_max_connections: this.rejectedMaxConnections,
      rejected_max_channels: this.rejectedMaxChannels,
      rejected_channel_rate: this.rejectedChannelRate,
      cluster_errors: this.clusterErrors,
      cluster_outages: this.clusterOutages,
      cluster_unsent_frames: this.clusterUnsentFrames,
      cluster_dropped_frames: this.clusterDroppedFrames,
      cluster_restored_channels: this.clusterRestoredChannels,
      cluster_unfilled_gaps: this.clusterUnfilledGaps,
      cluster_gap_reads: this.clusterGapReads
    }
  }
}
