import cluster, { type Worker } from 'node:cluster'

/** The primary's side of `mles --workers N`: what it prints and how long it waits. */
export interface WorkerPoolOptions {
  count: number
  /** Longest a worker may take to start listening. */
  startTimeoutMs: number
  /** Longest a worker may take to shut down gracefully before it is killed. */
  stopTimeoutMs: number
  /** One line for the operator (stdout). */
  say: (line: string) => void
  /** One line about a fault (stderr). */
  complain: (line: string) => void
}

/** Messages a worker sends to the primary. */
export type WorkerMessage =
  | { mles: 'listening', url: string }
  | { mles: 'failed', error: string }
  | { mles: 'metrics', request: number, metrics: Record<string, number> }
  | { mles: 'prometheus', request: number, metrics: unknown[] }

/**
 * The primary asks each worker for its metrics: its snapshot (the log line of
 * the whole server), or its Prometheus registry as JSON (`/metrics`).
 */
export interface MetricsRequest { mles: 'metrics?' | 'prometheus?', request: number }

/** How long the primary waits for the workers' metrics. */
const METRICS_WAIT_MS = 2000

const RESPAWN_DELAY_MS = 1000

function isWorkerMessage (message: unknown): message is WorkerMessage {
  return typeof message === 'object' && message !== null && 'mles' in message
}

/**
 * `mles --workers N`: N copies of the server in worker processes, sharing the
 * listening port through node:cluster (the primary accepts and hands
 * connections round-robin) and joined through Redis, so a channel spans them.
 * A worker that dies is replaced; SIGUSR2 replaces them all: N new workers
 * listen before the old ones close their clients (who reconnect to the new
 * ones and find their history in Redis).
 */
export class WorkerPool {
  private readonly workers = new Set<Worker>()
  /** Workers that listen: those asked for metrics. */
  private readonly ready = new Set<Worker>()
  private stopping = false
  private replacing: Promise<void> | null = null
  /** Workers being replaced or stopped on purpose: their exit is not a crash. */
  private readonly retiring = new WeakSet<Worker>()

  /** Told of every message a worker sends (the certificates a worker asks for under ACME). */
  onMessage: ((worker: Worker, message: unknown) => void) | null = null

  constructor (private readonly options: WorkerPoolOptions) {
    cluster.on('exit', (worker, code, signal) => { this.exited(worker, code, signal) })
    cluster.on('message', (worker, message) => { this.onMessage?.(worker, message) })
  }

  /** Sends `message` to every worker connected. */
  broadcast (message: object): void {
    for (const worker of this.workers) {
      if (worker.isConnected()) worker.send(message)
    }
  }

  get size (): number {
    return this.workers.size
  }

  /** Starts every worker; resolves with the URL once all listen, rejects if one fails. */
  async start (): Promise<string> {
    const urls = await Promise.all(Array.from({ length: this.options.count }, async () => await this.spawn()))
    return urls[0]
  }

  /** Starts one worker and waits until it listens. */
  private async spawn (): Promise<string> {
    const worker = cluster.fork()
    this.workers.add(worker)
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup()
        void this.retire(worker)
        reject(new Error(`worker ${worker.process.pid ?? '?'} did not start within ${this.options.startTimeoutMs} ms`))
      }, this.options.startTimeoutMs)
      const onMessage = (message: unknown): void => {
        if (!isWorkerMessage(message) || (message.mles !== 'listening' && message.mles !== 'failed')) return
        cleanup()
        if (message.mles === 'listening') {
          this.ready.add(worker)
          resolve(message.url)
        } else {
          reject(new Error(message.error))
        }
      }
      const onExit = (code: number | null): void => {
        cleanup()
        reject(new Error(`worker ${worker.process.pid ?? '?'} exited with code ${code ?? 'null'} before listening`))
      }
      const cleanup = (): void => {
        clearTimeout(timer)
        worker.off('message', onMessage)
        worker.off('exit', onExit)
      }
      worker.on('message', onMessage)
      worker.on('exit', onExit)
    })
  }

  /** Asks a worker to shut down gracefully (SIGTERM), killing it if it takes too long; resolves when it is gone. */
  private async retire (worker: Worker): Promise<void> {
    this.retiring.add(worker)
    if (worker.isDead()) {
      this.workers.delete(worker)
      return
    }
    const gone = new Promise<void>((resolve) => { worker.once('exit', () => { resolve() }) })
    worker.process.kill('SIGTERM')
    const killer = setTimeout(() => { worker.process.kill('SIGKILL') }, this.options.stopTimeoutMs)
    await gone
    clearTimeout(killer)
    this.workers.delete(worker)
  }

  /**
   * Replaces every worker: all the new ones first, and once every one of them
   * listens, the old ones go together. An old worker stops accepting at once,
   * so its members reconnect to new workers only, each of them once; replaced
   * one at a time, the members of the first would move to old workers that
   * are replaced next and be cut again. If a new worker fails to start, the
   * new ones go and the old ones stay.
   */
  async replaceAll (): Promise<void> {
    if (this.replacing !== null) return await this.replacing
    this.replacing = (async () => {
      const old = [...this.workers]
      this.options.say(`mles: replacing ${old.length} worker(s): starting ${old.length} new, then stopping the old`)
      const before = new Set(this.workers)
      const started = await Promise.allSettled(old.map(async () => await this.spawn()))
      const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected')
      if (failed !== undefined || this.stopping) {
        const fresh = [...this.workers].filter((worker) => !before.has(worker))
        await Promise.all(fresh.map(async (worker) => { await this.retire(worker) }))
        if (failed !== undefined) this.options.complain(`mles: a new worker failed to start (${(failed.reason as Error).message}); keeping the old ones`)
        return
      }
      await Promise.all(old.map(async (worker) => { await this.retire(worker) }))
      this.options.say(`mles: workers replaced (${[...this.workers].map((worker) => worker.process.pid).join(', ')})`)
    })().finally(() => { this.replacing = null })
    return await this.replacing
  }

  private metricsRequests = 0

  /** The snapshot of every worker that answers within a moment, for the log line of the whole server (SIGUSR1, `--metrics-interval`). */
  async collectMetrics (): Promise<Array<Record<string, number>>> {
    return await this.ask<Record<string, number>>('metrics')
  }

  /** The Prometheus registry, as JSON, of every worker that answers within a moment (`/metrics` on the primary). */
  async collectPrometheus (): Promise<unknown[][]> {
    return await this.ask<unknown[]>('prometheus')
  }

  /**
   * Asks every worker that listens (a worker still starting would not
   * answer) and gathers the answers that come within `METRICS_WAIT_MS`.
   */
  private async ask<T> (kind: 'metrics' | 'prometheus'): Promise<T[]> {
    const request = ++this.metricsRequests
    const workers = [...this.ready].filter((worker) => worker.isConnected())
    const answers = await Promise.all(workers.map(async (worker) => await new Promise<T | null>((resolve) => {
      const timer = setTimeout(() => { done(null) }, METRICS_WAIT_MS)
      const onMessage = (message: unknown): void => {
        if (isWorkerMessage(message) && message.mles === kind && message.request === request) done(message.metrics as T)
      }
      const done = (metrics: T | null): void => {
        clearTimeout(timer)
        worker.off('message', onMessage)
        worker.off('exit', onExit)
        resolve(metrics)
      }
      const onExit = (): void => { done(null) }
      worker.on('message', onMessage)
      worker.on('exit', onExit)
      worker.send({ mles: `${kind}?`, request } satisfies MetricsRequest)
    })))
    return answers.filter((answer): answer is Awaited<T> => answer !== null) as T[]
  }

  /** Sends a signal to every worker (SIGHUP certificates). */
  forward (signal: NodeJS.Signals): void {
    for (const worker of this.workers) worker.process.kill(signal)
  }

  /** Stops every worker gracefully. */
  async stop (): Promise<void> {
    this.stopping = true
    await Promise.all([...this.workers].map(async (worker) => { await this.retire(worker) }))
  }

  private exited (worker: Worker, code: number | null, signal: string | null): void {
    this.workers.delete(worker)
    this.ready.delete(worker)
    if (this.stopping || this.retiring.has(worker)) return
    this.options.complain(`mles: worker ${worker.process.pid ?? '?'} died (${signal ?? `code ${code ?? 'null'}`}); starting another in ${RESPAWN_DELAY_MS} ms`)
    setTimeout(() => {
      if (this.stopping) return
      this.spawn().catch((error: Error) => { this.options.complain(`mles: a replacement worker failed to start: ${error.message}`) })
    }, RESPAWN_DELAY_MS).unref()
  }
}
