// Builds flows with Flowcraft's own builder (npm flowcraft, pinned in package.json) and prints
// their blueprints as JSON: the goldens tests/test_builder_parity.py compares Flow(...) against.
// Regenerate with `make parity-goldens` (installs the package under .bench/builder-parity).
// Every flow here has a twin of the same name in tests/test_builder_parity.py.
//
// usage: node tests/builder_parity/flows.mjs DIR   (DIR holds node_modules/flowcraft)
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const dir = resolve(process.argv[2] ?? '.bench/builder-parity')
const pkgDir = join(dir, 'node_modules', 'flowcraft')
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
const { createFlow, BaseNode, SubflowNode } = await import(
	pathToFileURL(join(pkgDir, pkg.exports['.'].import)).href
)

// Named classes: Flowcraft keys a class by its name (a function by a hash of its source, which
// a Python builder cannot reproduce), so the uses keys below are the names.
const node = (name) =>
	({ [name]: class extends BaseNode { async exec() { return { output: name } } } })[name]
const [Fetch, Recover, Route, Merge, Init, Step, Check, Done, Start, Probe, Ok, Timeout] = [
	'Fetch', 'Recover', 'Route', 'Merge', 'Init', 'Step', 'Check', 'Done', 'Start', 'Probe', 'Ok',
	'Timeout',
].map(node)
const [Begin, Row, Cell, RowDone, Finish, Load, Square, Sum, Tag, FetchPage, Process, Save] = [
	'Begin', 'Row', 'Cell', 'RowDone', 'Finish', 'Load', 'Square', 'Sum', 'Tag', 'FetchPage',
	'Process', 'Save',
].map(node)
const [Report, Double, Format, Prepare, After, A, B] = [
	'Report', 'Double', 'Format', 'Prepare', 'After', 'A', 'B',
].map(node)

const flows = {
	plain: () =>
		createFlow('plain')
			.node('fetch', Fetch, {
				params: { url: 'https://example.com/orders', headers: { accept: 'json' } },
				config: { maxRetries: 3, retryDelay: 100, timeout: 5000, fallback: 'recover' },
			})
			.node('recover', Recover)
			.node('route', Route, { inputs: 'fetch.body' })
			.node('merge', Merge, {
				inputs: { order: 'fetch', user: '_user' },
				config: { joinStrategy: 'any' },
			})
			.wait('approve', { params: { prompt: 'ship it?' } })
			.sleep('pause', { duration: '5s' })
			.sleep('settle', { duration: 250 })
			.edge('fetch', 'route')
			.edge('route', 'approve', { action: 'big', condition: 'result.output.total > 100' })
			.edge('route', 'merge', { action: 'small', transform: 'input.total' })
			.edge('approve', 'pause')
			.edge('pause', 'settle')
			.edge('settle', 'merge', { condition: 'context.region === "eu"' }),

	loop: () =>
		createFlow('loop')
			.node('init', Init)
			.node('step', Step)
			.node('check', Check)
			.node('done', Done)
			.edge('init', 'step')
			.edge('step', 'check')
			.loop('counter', { startNodeId: 'step', endNodeId: 'check', condition: 'count < 5' })
			.edge('counter', 'done'),

	// As Flowcraft's own runtime tests build a loop: entered through its controller.
	'loop-entered-at-controller': () =>
		createFlow('loop-entered-at-controller')
			.node('initialize', Init)
			.node('increment', Step)
			.loop('counter', { startNodeId: 'increment', endNodeId: 'increment', condition: 'count < 5' })
			.node('finalize', Done)
			.edge('initialize', 'counter')
			.edge('counter', 'finalize'),

	'loop-exits': () =>
		createFlow('loop-exits')
			// Declared before its nodes: the builder checks them only in toBlueprint().
			.loop('poll', {
				startNodeId: 'probe',
				endNodeId: 'probe',
				condition: 'probe.ready !== true && attempts < 10',
			})
			.node('start', Start)
			.node('probe', Probe)
			.node('ok', Ok)
			.node('timeout', Timeout)
			.edge('start', 'probe')
			.edge('poll', 'ok', { condition: 'probe.ready === true' })
			.edge('poll', 'timeout', { action: 'gave-up', transform: 'input.attempts' }),

	'nested-loop': () =>
		createFlow('nested-loop')
			.node('begin', Begin)
			.node('row', Row)
			.node('cell', Cell)
			.node('rowDone', RowDone)
			.node('finish', Finish)
			.edge('begin', 'row')
			.edge('row', 'cell')
			.loop('cells', { startNodeId: 'cell', endNodeId: 'cell', condition: 'col < 3' })
			.edge('cells', 'rowDone')
			.loop('rows', { startNodeId: 'row', endNodeId: 'rowDone', condition: 'row < 2' })
			.edge('rows', 'finish'),

	batch: () =>
		createFlow('batch')
			.node('load', Load)
			.batch('square', Square, { inputKey: 'numbers', outputKey: 'squares', chunkSize: 10 })
			.node('sum', Sum, { inputs: 'squares' })
			.batch('tag', Tag, { inputKey: 'squares', outputKey: 'tags' })
			.edge('load', 'square')
			.edge('square', 'sum', { transform: 'input.length' })
			.edge('sum', 'tag', { condition: 'result.output > 0' }),

	'batch-in-loop': () =>
		createFlow('batch-in-loop')
			.node('begin', Begin)
			.node('fetchPage', FetchPage)
			.batch('process', Process, { inputKey: 'page', outputKey: 'processed', chunkSize: 2 })
			.node('save', Save)
			.node('report', Report)
			.edge('begin', 'fetchPage')
			.edge('fetchPage', 'process')
			.edge('process', 'save')
			.loop('pages', {
				startNodeId: 'fetchPage',
				endNodeId: 'save',
				condition: 'save.hasMore === true',
			})
			.edge('pages', 'report'),

	child: () =>
		createFlow('child')
			.node('double', Double, { inputs: 'value' })
			.node('format', Format)
			.edge('double', 'format'),

	// Flowcraft's builder has no subflow verb: its tests write a SubflowNode node like this.
	subflow: () =>
		createFlow('subflow')
			.node('prepare', Prepare)
			.node('call', SubflowNode, {
				params: {
					blueprintId: 'child',
					inputs: { value: 'prepare' },
					outputs: { result: 'format' },
				},
				config: { maxRetries: 2 },
			})
			.node('after', After)
			.edge('prepare', 'call')
			.edge('call', 'after'),

	'cycle-entry': () =>
		createFlow('cycle-entry')
			.node('a', A)
			.node('b', B)
			.edge('a', 'b')
			.setCycleEntryPoint('b')
			.setCycleEntryPoint('a')
			.setCycleEntryPoint('b'),

	// Edges between two constructs: Flowcraft re-wires one end per copy (a deliberate difference).
	'construct-to-construct': () =>
		createFlow('construct-to-construct')
			.node('a', A)
			.batch('first', Square, { inputKey: 'numbers', outputKey: 'squares' })
			.batch('second', Tag, { inputKey: 'squares', outputKey: 'tags' })
			.loop('again', { startNodeId: 'a', endNodeId: 'a', condition: 'n < 2' })
			.edge('first', 'second')
			.edge('again', 'first'),
}

const errors = {
	'no-nodes': () => createFlow('empty'),
	'missing-start': () =>
		createFlow('f')
			.node('end', Done)
			.loop('loop1', { startNodeId: 'nonexistent', endNodeId: 'end', condition: 'i < 10' }),
	'missing-end': () =>
		createFlow('f')
			.node('start', Start)
			.loop('loop1', { startNodeId: 'start', endNodeId: 'nonexistent', condition: 'i < 10' }),
}

const out = { flowcraft: pkg.version, blueprints: {}, errors: {} }
for (const [name, build] of Object.entries(flows)) out.blueprints[name] = build().toBlueprint()
for (const [name, build] of Object.entries(errors)) {
	try {
		build().toBlueprint()
		throw new Error(`${name}: toBlueprint() did not throw`)
	} catch (err) {
		out.errors[name] = err.message
	}
}
process.stdout.write(`${JSON.stringify(out, null, '\t')}\n`)
