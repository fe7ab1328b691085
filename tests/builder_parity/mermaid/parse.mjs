// Parses each Mermaid file named on the command line with Mermaid's own parser (under jsdom) and
// exits non-zero if any does not parse. Run by `make mermaid-check`.
//
// usage: node tests/builder_parity/mermaid/parse.mjs DIR FILE...   (DIR holds node_modules)
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const [dir, ...files] = process.argv.slice(2)
const modules = join(resolve(dir), 'node_modules')
const jsdom = await import(pathToFileURL(join(modules, "jsdom", "lib", "api.js")).href)
const { JSDOM } = jsdom.JSDOM ? jsdom : jsdom.default
const dom = new JSDOM('<!doctype html><html><body></body></html>')
globalThis.window = dom.window
globalThis.document = dom.window.document
const pkg = JSON.parse(readFileSync(join(modules, 'mermaid', 'package.json'), 'utf8'))
const { default: mermaid } = await import(
	pathToFileURL(join(modules, 'mermaid', pkg.exports['.'].import)).href
)
mermaid.initialize({ startOnLoad: false })
let failed = 0
for (const file of files) {
	try {
		await mermaid.parse(readFileSync(file, 'utf8'))
		console.log(`ok   ${file}`)
	} catch (err) {
		failed++
		console.log(`FAIL ${file}: ${err.message}`)
	}
}
console.log(`mermaid ${pkg.version}: ${files.length - failed} of ${files.length} charts parse`)
process.exit(failed ? 1 : 0)
