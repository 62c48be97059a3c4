/** Aggregated results, the stdout/markdown tables and the SVG chart. */
export interface Stat { median: number, min: number, max: number }
export interface Entry {
  system: string
  workload: string
  params: Record<string, number | string>
  runs: number
  [metric: string]: Stat | string | number | Record<string, number | string>
}

export function aggregate (values: number[]): Stat {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  return { median, min: sorted[0], max: sorted[sorted.length - 1] }
}

export function stat (entry: Entry, metric: string): Stat | undefined {
  const value = entry[metric]
  return typeof value === 'object' && value !== null && 'median' in value ? value as Stat : undefined
}

function format (value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '–'
  if (Math.abs(value) >= 1e6) return (value / 1e6).toFixed(2) + ' M'
  if (Math.abs(value) >= 1e4) return (value / 1e3).toFixed(0) + ' k'
  return value.toFixed(digits)
}

export function paramsLabel (params: Record<string, number | string>): string {
  return Object.entries(params).map(([key, value]) => `${key}=${value}`).join(' ')
}

const COLUMNS: Array<[string, string, number]> = [
  ['deliveries_per_s', 'deliveries/s', 0],
  ['server_us_per_delivery', 'server µs/delivery', 3],
  ['p50_ms', 'p50 ms', 2],
  ['p99_ms', 'p99 ms', 2],
  ['round_trips_per_s', 'round trips/s', 0],
  ['kb_per_conn', 'KB/conn idle', 1],
  ['kb_per_conn_at_1s', 'KB/conn at 1 s', 1],
  ['joins_per_s', 'joins/s', 0],
  ['server_us_per_join', 'server µs/join', 0],
  ['server_cpu_pct', 'server CPU %', 0],
  ['replay_completeness', 'replay complete', 3],
  ['rss_mb_start', 'server RSS start MB', 1],
  ['rss_mb_max', 'server RSS max MB', 1],
  ['generator_cpu_pct', 'generator CPU %', 0],
  ['generators', 'generators', 0]
]

/** W4's per-process generator CPU (`generator_2_cpu_pct`, …), shown after the fixed columns. */
const EACH_GENERATOR = /^generator_(\d+)_cpu_pct$/

function columnsOf (entries: Entry[]): Array<[string, string, number]> {
  const fixed = COLUMNS.filter(([metric]) => entries.some((entry) => stat(entry, metric) !== undefined))
  const each = [...new Set(entries.flatMap((entry) => Object.keys(entry).filter((key) => EACH_GENERATOR.test(key))))]
    .sort((a, b) => Number(EACH_GENERATOR.exec(a)?.[1]) - Number(EACH_GENERATOR.exec(b)?.[1]))
    .map((metric): [string, string, number] => [metric, `generator ${EACH_GENERATOR.exec(metric)?.[1]} CPU %`, 0])
  return [...fixed, ...each]
}

/** At or above this share of its core, the generator may be what limits the run: the row is marked. */
export const GENERATOR_SATURATED_PCT = 90
const SATURATED_MARK = ' ⚠'
const SATURATED_NOTE = `${SATURATED_MARK.trim()} the load generator used ${GENERATOR_SATURATED_PCT} % or more of its core in that run: it may have set the pace, so the row says less about the server.`

/** Whether `entry`'s generator was saturated (median over its runs). */
export function generatorSaturated (entry: Entry): boolean {
  return (stat(entry, 'generator_cpu_pct')?.median ?? 0) >= GENERATOR_SATURATED_PCT
}

const WORKLOAD_TITLES: Record<string, string> = {
  W1: 'W1 fan-out (1 publisher → N subscribers)',
  W2: 'W2 ping-pong pairs',
  W3: 'W3 idle connections',
  W4: 'W4 join storm',
  W5: 'W5 fan-out with 5 clients that never read',
  W6: 'W6 fan-out over TLS (W1 with wss://)'
}

/** One table per workload, each with the columns that apply to it. */
export function tablesByWorkload (entries: Entry[]): string {
  const workloads = [...new Set(entries.map((entry) => entry.workload))]
  return workloads.map((workload) => `**${WORKLOAD_TITLES[workload] ?? workload}**\n\n${table(entries.filter((entry) => entry.workload === workload))}`).join('\n\n')
}

/** A markdown table (also readable on a terminal): medians of each metric. */
export function table (entries: Entry[]): string {
  const used = columnsOf(entries)
  const header = ['workload', 'params', 'system', ...used.map(([, label]) => label)]
  const rows = entries.map((entry) => [entry.workload, paramsLabel(entry.params), entry.system + (generatorSaturated(entry) ? SATURATED_MARK : ''),
    ...used.map(([metric, , digits]) => format(stat(entry, metric)?.median, digits))])
  const lines = [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n')
  return entries.some(generatorSaturated) ? `${lines}\n\n${SATURATED_NOTE}` : lines
}

interface Panel { title: string, unit: string, bars: Array<{ label: string, value: number }>, lowerIsBetter: boolean }

const COLORS: Record<string, string> = {
  'fastify-mles': '#2b7a3d', 'ws-ceiling': '#7f8c8d', 'ws-basic': '#b0b7bb', 'socket.io': '#c0392b', 'socket.io-redis': '#e67e73', mosquitto: '#8e44ad', nats: '#2c6fbb'
}

function escape (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;')
}

/** Horizontal bar charts, one panel per headline metric. */
export function chart (entries: Entry[]): string {
  const pick = (workload: string, params: Record<string, number | string>, metric: string): Array<{ label: string, value: number }> =>
    entries.filter((entry) => entry.workload === workload && paramsLabel(entry.params) === paramsLabel(params))
      .map((entry) => ({ label: entry.system, value: stat(entry, metric)?.median ?? Number.NaN }))
      .filter((bar) => Number.isFinite(bar.value))
  const panels: Panel[] = [
    { title: 'W1 fan-out, 1 → 100, 64 B, saturation', unit: 'deliveries/s', bars: pick('W1', { n: 100, size: 64, mode: 'sat' }, 'deliveries_per_s'), lowerIsBetter: false },
    { title: 'W1 server CPU per delivery (same run)', unit: 'µs', bars: pick('W1', { n: 100, size: 64, mode: 'sat' }, 'server_us_per_delivery'), lowerIsBetter: true },
    { title: 'W2 ping-pong pairs', unit: 'round trips/s', bars: entries.filter((e) => e.workload === 'W2').map((e) => ({ label: e.system, value: stat(e, 'round_trips_per_s')?.median ?? Number.NaN })), lowerIsBetter: false },
    { title: 'W3 idle connections', unit: 'KB per connection', bars: entries.filter((e) => e.workload === 'W3').map((e) => ({ label: e.system, value: stat(e, 'kb_per_conn')?.median ?? Number.NaN })), lowerIsBetter: true },
    { title: 'W4 join storm onto a 200-frame history', unit: 'joins/s', bars: entries.filter((e) => e.workload === 'W4').map((e) => ({ label: e.system, value: stat(e, 'joins_per_s')?.median ?? Number.NaN })), lowerIsBetter: false },
    { title: 'W6 server CPU per delivery over TLS, 1 → 1000, 1 KiB, saturation', unit: 'µs', bars: pick('W6', { n: 1000, size: 1024, mode: 'sat' }, 'server_us_per_delivery'), lowerIsBetter: true },
    {
      title: 'W5 with 5 clients that never read: server RSS growth',
      unit: 'MB',
      bars: entries.filter((e) => e.workload === 'W5').map((e) => ({ label: e.system, value: (stat(e, 'rss_mb_max')?.median ?? Number.NaN) - (stat(e, 'rss_mb_start')?.median ?? Number.NaN) })),
      lowerIsBetter: true
    }
  ].filter((panel) => panel.bars.length > 0)
  const width = 640
  const barHeight = 18
  const labelWidth = 110
  let y = 10
  const parts: string[] = []
  for (const panel of panels) {
    parts.push(`<text x="10" y="${y + 14}" font-weight="bold">${escape(panel.title)} — ${escape(panel.unit)}${panel.lowerIsBetter ? ' (lower is better)' : ''}</text>`)
    y += 24
    const max = Math.max(...panel.bars.map((bar) => bar.value))
    for (const bar of panel.bars) {
      const length = max > 0 ? (width - labelWidth - 90) * bar.value / max : 0
      parts.push(`<text x="10" y="${y + 13}">${escape(bar.label)}</text>`)
      parts.push(`<rect x="${labelWidth}" y="${y}" width="${length.toFixed(1)}" height="${barHeight - 4}" fill="${COLORS[bar.label] ?? '#555'}"/>`)
      parts.push(`<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + 13}">${escape(format(bar.value, bar.value < 10 ? 2 : 0))}</text>`)
      y += barHeight
    }
    y += 12
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`
}
