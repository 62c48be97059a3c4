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

/** The metrics log line's text: the reference's seven, as it logs them. */
export function metricsLine (snapshot: Readonly<Record<(typeof REFERENCE_METRICS)[number], number>>): string {
  return 'mles metrics: ' + REFERENCE_METRICS.map((name) => `${name}=${snapshot[name]}`).join(' ')
}

/** The metrics of several workers as one server's: peaks by their largest, everything else summed. */
export function sumMetrics (snapshots: ReadonlyArray<Readonly<Record<string, number>>>): Record<string, number> & Record<(typeof REFERENCE_METRICS)[number], number> {
  const total: Record<string, number> = Object.fromEntries(REFERENCE_METRICS.map((name) => [name, 0]))
  for (const snapshot of snapshots) {
    for (const [name, value] of Object.entries(snapshot)) {
      total[name] = name.includes('peak') ? Math.max(total[name] ?? 0, value) : (total[name] ?? 0) + value
    }
  }
  return total as Record<string, number> & Record<(typeof REFERENCE_METRICS)[number], number>
}
