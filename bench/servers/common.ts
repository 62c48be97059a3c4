/** Shared by the benchmark servers: report the port, collect garbage on request, exit on SIGTERM. */
export function serve (port: number): void {
  process.on('SIGUSR2', () => { (globalThis as { gc?: () => void }).gc?.() })
  process.on('SIGTERM', () => { process.exit(0) })
  process.stdout.write(`READY ${port}\n`)
}
