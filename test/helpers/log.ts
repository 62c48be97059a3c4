import { Writable } from 'node:stream'

export interface LogLine {
  level: number
  msg: string
  err?: { message: string }
  [field: string]: unknown
}

/** A pino destination keeping every line parsed, for Fastify's `logger: { stream }`. */
export function capturedLog (): { lines: LogLine[], stream: Writable } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine)
      callback()
    }
  })
  return { lines, stream }
}
