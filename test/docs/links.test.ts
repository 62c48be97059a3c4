// The README and the pages under docs/: every relative link and image must point at a file
// that exists, and every #anchor at a heading of the page it names (GitHub's slugs).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
const README = join(root, 'README.md')
const DOCS = join(root, 'docs')
const README_MAX_LINES = 320

/** README.md and every docs/*.md, as absolute paths. */
function pages (): string[] {
  const docs = readdirSync(DOCS).filter((name) => name.endsWith('.md')).sort().map((name) => join(DOCS, name))
  return [README, ...docs]
}

/**
 * The text with everything that is not rendered as markdown prose blanked out — fenced code
 * blocks, HTML comments and inline code spans — keeping every newline, so offsets still give
 * the right line numbers.
 */
function prose (text: string): string {
  const blank = (s: string): string => s.replace(/[^\n]/g, ' ')
  const lines = text.split('\n')
  let fence: { char: string, length: number } | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const opening = /^ {0,3}(`{3,}|~{3,})/.exec(line)
    if (fence === undefined) {
      if (opening !== null) {
        fence = { char: opening[1][0], length: opening[1].length }
        lines[i] = blank(line)
      }
    } else {
      const closing = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line)
      if (closing !== null && closing[1][0] === fence.char && closing[1].length >= fence.length) fence = undefined
      lines[i] = blank(line)
    }
  }
  return lines.join('\n')
    .replace(/<!--[\s\S]*?-->/g, blank)
    .replace(/(`+)(?!`)[\s\S]*?[^`]\1(?!`)/g, blank)
}

/** GitHub's slug for a heading's text (before duplicates get their -1, -2 suffix). */
export function slug (heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image in a heading: its text
    .replace(/<[^>]+>/g, '') // HTML tags
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '') // punctuation goes (backticks too); - and _ stay
    .replace(/ /g, '-')
}

const ATX = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/
const SETEXT_UNDERLINE = /^ {0,3}(=+|-+)[ \t]*$/
const NOT_A_PARAGRAPH = /^ {0,3}([-*+]|\d+[.)])\s|^ {0,3}(>|\|)/

/** The text of every heading, in order: found in the prose (not in code), read from the original line. */
function headings (text: string): string[] {
  const original = text.split('\n')
  const lines = prose(text).split('\n')
  const found: string[] = []
  for (let i = 0; i < lines.length; i++) {
    if (ATX.test(lines[i])) {
      found.push(ATX.exec(original[i])?.[1] ?? '')
    } else if (i + 1 < lines.length && SETEXT_UNDERLINE.test(lines[i + 1]) && lines[i].trim() !== '' &&
        !NOT_A_PARAGRAPH.test(lines[i]) && (i === 0 || lines[i - 1].trim() === '')) {
      found.push(original[i].trim()) // a setext heading: one paragraph line underlined with === or ---
      i++
    }
  }
  return found
}

/** The anchors a markdown text's headings get on GitHub, duplicates numbered -1, -2, … as GitHub does. */
export function anchors (text: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const heading of headings(text)) {
    const base = slug(heading)
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    result.add(count === 0 ? base : `${base}-${count}`)
  }
  return result
}

interface Link { line: number, target: string }

/** Every link and image target in the rendered prose of a markdown text. */
export function links (text: string): Link[] {
  const body = prose(text)
  const found: Link[] = []
  const lineAt = (offset: number): number => body.slice(0, offset).split('\n').length
  const add = (offset: number, target: string): void => {
    found.push({ line: lineAt(offset), target: target.replace(/^<(.*)>$/, '$1') })
  }
  // [text](target "title") and ![alt](target), the text holding at most one level of brackets.
  for (const m of body.matchAll(/!?\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*(<[^>\n]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g)) {
    add(m.index ?? 0, m[1])
  }
  // Reference definitions: [name]: target
  for (const m of body.matchAll(/^ {0,3}\[[^\]]+\]:[ \t]*(<[^>\n]*>|\S+)/gm)) add(m.index ?? 0, m[1])
  // <img src="…"> and <a href="…">
  for (const m of body.matchAll(/<(?:img|a)\b[^>]*?\s(?:src|href)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/gi)) {
    add(m.index ?? 0, m[1] ?? m[2] ?? m[3])
  }
  return found.sort((a, b) => a.line - b.line)
}

/** Why a relative link of `page` is broken, or undefined if it is fine or not relative. */
function problem (page: string, target: string, anchorsOf: (file: string) => Set<string>): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) return undefined // http:, https:, mailto:, …
  const hash = target.indexOf('#')
  const pathPart = (hash === -1 ? target : target.slice(0, hash)).replace(/\?.*$/, '')
  const anchor = hash === -1 ? undefined : target.slice(hash + 1)
  let file = page
  if (pathPart !== '') {
    let decoded: string
    try {
      decoded = decodeURIComponent(pathPart)
    } catch {
      return 'not a valid URL path'
    }
    file = decoded.startsWith('/') ? join(root, decoded) : resolve(dirname(page), decoded)
    if (!existsSync(file)) return `no such file: ${relative(root, file)}`
  }
  if (anchor === undefined || !file.endsWith('.md')) return undefined
  if (anchor === '') return 'empty anchor'
  let wanted: string
  try {
    wanted = decodeURIComponent(anchor)
  } catch {
    return 'not a valid anchor'
  }
  if (!anchorsOf(file).has(wanted)) return `no heading with the anchor #${wanted} in ${relative(root, file)}`
  return undefined
}

test('slugs and anchors follow GitHub', () => {
  assert.equal(slug('The `mles` server'), 'the-mles-server')
  assert.equal(slug('Scaling out: Redis, workers, durable history'), 'scaling-out-redis-workers-durable-history')
  assert.equal(slug('All the cores of one machine: `--workers N`'), 'all-the-cores-of-one-machine---workers-n')
  assert.equal(slug('`app.mles`'), 'appmles')
  assert.equal(slug('Mles v1 clients (the legacy TCP protocol)'), 'mles-v1-clients-the-legacy-tcp-protocol')
  assert.equal(slug('snake_case and [a link](x.md)'), 'snake_case-and-a-link')
  const text = '# Metrics\n\n```sh\n# not a heading\n```\n\n## Metrics\n\nMetrics\n-------\n\n### Other ##\n'
  assert.deepEqual([...anchors(text)], ['metrics', 'metrics-1', 'metrics-2', 'other'])
  const sample = 'See [a](a.md#x), ![i](i.png "t") and `[code](no.md)`,\n<img src="p.png"> <a href=\'q.md\'>q</a>\n' +
    '```\n[fenced](no.md)\n```\n<!-- [hidden](no.md) -->\n[ref]: r.md\n'
  assert.deepEqual(links(sample), [
    { line: 1, target: 'a.md#x' }, { line: 1, target: 'i.png' },
    { line: 2, target: 'p.png' }, { line: 2, target: 'q.md' }, { line: 7, target: 'r.md' }
  ])
})

test('every relative link and image in README.md and docs/*.md resolves', () => {
  const cache = new Map<string, Set<string>>()
  const anchorsOf = (file: string): Set<string> => {
    let found = cache.get(file)
    if (found === undefined) {
      found = anchors(readFileSync(file, 'utf8'))
      cache.set(file, found)
    }
    return found
  }
  const broken: string[] = []
  let checked = 0
  for (const page of pages()) {
    for (const { line, target } of links(readFileSync(page, 'utf8'))) {
      checked++
      const why = problem(page, target, anchorsOf)
      if (why !== undefined) broken.push(`${relative(root, page)}:${line}: (${target}) — ${why}`)
    }
  }
  assert.ok(checked > 0, 'no links found at all')
  assert.deepEqual(broken, [], `${broken.length} broken link(s):\n${broken.join('\n')}`)
})

test('every docs page is linked from the README', () => {
  const linked = new Set(links(readFileSync(README, 'utf8'))
    .map(({ target }) => target.replace(/[#?].*$/, ''))
    .filter((path) => path !== '' && !/^[a-z][a-z0-9+.-]*:/i.test(path))
    .map((path) => resolve(root, path)))
  const missing = pages().slice(1).filter((page) => !linked.has(page)).map((page) => relative(root, page))
  assert.deepEqual(missing, [], `docs pages the README does not link: ${missing.join(', ')}`)
})

test(`README.md is at most ${README_MAX_LINES} lines`, () => {
  const lines = readFileSync(README, 'utf8').replace(/\n$/, '').split('\n').length
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; the front page should stay within ${README_MAX_LINES}`)
})
