// W8's stand-in for systemd: a small process, on the server's core, that
// starts the `mles` command and, when told to, restarts or signals it. The
// members' process (bench/storm.ts) is busy with 15,000 clients, and
// restarting the server from there would add its own event-loop delay to the
// downtime the clients see; an operator's supervisor has no such delay.
//
// argv[2]: JSON { cli, args, pin, port }. Lines on stdin: RESTART (SIGTERM,
// wait for the exit, start again on the same port), SIGNAL <name>, STOP.
// Lines on stdout: SERVING <pid>, RESTARTED {"stop_ms","start_ms","pid"},
// SIGNALLED, STOPPED; FAILED <message> and exit 1 when the server fails.
import { createInterface } from 'node:readline'
import { startMlesProcess } from './lib/peers.js'
import { stopChild } from './lib/proc.js'

interface SupervisorJob {
  cli: string
  args: string[]
  pin: string[]
  port: number
}

const job = JSON.parse(process.argv[2] ?? '{}') as SupervisorJob
const say = (line: string): void => { process.stdout.write(line + '\n') }

async function start (): Promise<Awaited<ReturnType<typeof startMlesProcess>>> {
  return await startMlesProcess(job.cli, job.args, { pin: job.pin, port: job.port })
}

try {
  let server = await start()
  say(`SERVING ${server.child.pid as number}`)
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'RESTART') {
      const began = Date.now()
      await stopChild(server.child, 15_000)
      const stopped = Date.now()
      server = await start()
      say(`RESTARTED ${JSON.stringify({ stop_ms: stopped - began, start_ms: Date.now() - stopped, pid: server.child.pid })}`)
    } else if (line.startsWith('SIGNAL ')) {
      server.child.kill(line.slice('SIGNAL '.length) as NodeJS.Signals)
      say('SIGNALLED')
    } else if (line === 'STOP') {
      break
    }
  }
  await stopChild(server.child, 15_000)
  say('STOPPED')
  process.exit(0)
} catch (error) {
  say(`FAILED ${(error as Error).message}`)
  process.exit(1)
}
