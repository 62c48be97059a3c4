/** The reference server's seven metrics, in the order it logs them. */
export const REFERENCE_METRICS = [
  'active_connections',
  'total_messages_sent',
  'total_messages_received',
  'total_channels',
  'total_errors',
  'total_dropped_connections',
  'dropped_by_ip'
] as const

/** The extra counters exported next to them. */
export const EXTRA_METRICS = [
  'dropped_messages_oversize',
  'dropped_messages_rate',
  'dropped_slow_consumers',
  'dropped_keepalive',
  'dropped_join_timeout',
  'dropped_messages_readonly',
  'rejected_authorize',
  'authorize_errors',
  'rejected_origin',
  'history_bytes',
  'history_evicted_frames',
  'rejected_max_connections',
  'rejected_max_channels',
  'rejected_channel_rate',
  'cluster_errors',
  'cluster_outages',
  'cluster_unsent_frames',
  'cluster_dropped_frames',
  'cluster_restored_channels',
  'cluster_unfilled_gaps',
  'cluster_gap_reads'
] as const
