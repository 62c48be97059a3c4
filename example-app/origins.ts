import { normalizeOrigin, type MlesOriginCheck } from '../src/options.js'
import type { ServerConfig } from './config.js'

/**
 * The origins the `mles` server lets browsers connect from: its own pages,
 * that is `https://` for each of `--domains` on the TLS port — and with
 * `--no-tls` also `http://` on the plain port, while `https://` on 443 stays
 * for a TLS-terminating proxy in front — plus every `--allowed-origin`.
 * `--allowed-origin '*'` allows any. `port` is read when the first upgrade
 * comes, so a port picked by the system (`--port 0`) is the one in use.
 */
export function standaloneOrigins (config: Pick<ServerConfig, 'domains' | 'tls' | 'allowedOrigins'>, port: () => number): readonly string[] | MlesOriginCheck {
  const extra = config.allowedOrigins ?? []
  if (extra.includes('*')) return ['*']
  let allowed: Set<string> | null = null
  const build = (): Set<string> => {
    const origins = new Set<string>()
    const listening = port()
    for (const domain of config.domains) {
      const host = domain.includes(':') ? `[${domain}]` : domain
      if (config.tls === 'none') {
        origins.add(`http://${host}${listening === 80 ? '' : `:${listening}`}`)
        origins.add(`https://${host}`)
      } else {
        origins.add(`https://${host}${listening === 443 ? '' : `:${listening}`}`)
      }
    }
    for (const origin of extra) {
      const normalized = normalizeOrigin(origin)
      if (normalized !== null) origins.add(normalized)
    }
    return origins
  }
  return (origin) => {
    allowed ??= build()
    const normalized = normalizeOrigin(origin)
    return normalized !== null && allowed.has(normalized)
  }
}
