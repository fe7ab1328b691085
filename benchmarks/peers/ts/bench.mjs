// Flowcraft TS 2.10.1 (npm `flowcraft`) and its BullMQ adapter, for `make bench-peers`.
//
//   node bench.mjs memory SHAPE SIZE RUNS            in-process FlowRuntime, R runs at once
//   node bench.mjs worker REDIS_URL QUEUE            a BullMQAdapter worker; "ready", stops on SIGTERM
//   node bench.mjs client REDIS_URL QUEUE SHAPE SIZE RUNS   start R runs at once, wait for all
//   node bench.mjs latency REDIS_URL QUEUE SIZE COUNT       COUNT chains, one at a time
//
// Each mode prints one JSON line. Runs are started the way Flowcraft's distributed example
// client starts them (examples/ai-workflows/distributed-execution/src/client.ts): the initial
// context is written to `workflow:state:<run>`, the start jobs are added to the queue, and the
// result is read from `workflow:status:<run>`. The client polls that key every millisecond for
// all pending runs at once (one MGET), since the adapter publishes no notification.
import { BullMQAdapter, RedisCoordinationStore } from '@flowcraft/bullmq-adapter'
import { Queue } from 'bullmq'
import { FlowRuntime } from 'flowcraft'
import IORedis from 'ioredis'

const silent = { debug() {}, info() {}, warn() {}, error(...a) { console.error(...a) } }
const registry = { noop: async () => ({ output: null }) }

function chain(size) {
	const nodes = []
	const edges = []
	for (let i = 0; i < size; i++) nodes.push({ id: `n${i}`, uses: 'noop' })
	for (let i = 0; i < size - 1; i++) edges.push({ source: `n${i}`, target: `n${i + 1}` })
	return { id: `chain-${size}`, nodes, edges }
}

function fanout(size) {
	const nodes = [{ id: 'start', uses: 'noop' }]
	const edges = []
	for (let i = 0; i < size; i++) {
		nodes.push({ id: `p${i}`, uses: 'noop' })
		edges.push({ source: 'start', target: `p${i}` })
		edges.push({ source: `p${i}`, target: 'join' })
	}
	nodes.push({ id: 'join', uses: 'noop' })
	return { id: `fanout-${size}`, nodes, edges }
}

// As benchmarks/shapes.py: `size` subflow nodes in a line, each running a one-node child.
const CHILD = { id: 'bench-child', nodes: [{ id: 'work', uses: 'noop' }], edges: [] }

function subflowChain(size) {
	const nodes = []
	const edges = []
	for (let i = 0; i < size; i++) {
		nodes.push({ id: `s${i}`, uses: 'subflow', params: { blueprintId: CHILD.id } })
	}
	for (let i = 0; i < size - 1; i++) edges.push({ source: `s${i}`, target: `s${i + 1}` })
	return { id: `subflow-chain-${size}`, nodes, edges }
}

const SHAPES = { chain, fanout, 'subflow-chain': subflowChain }

function blueprints() {
	const all = { [CHILD.id]: CHILD }
	for (const size of [5, 20, 500]) {
		for (const [name, make] of Object.entries(SHAPES)) all[`${name}-${size}`] = make(size)
	}
	return all
}

function summary(nodes, seconds, latencies, cpu) {
	const lat = [...latencies].sort((a, b) => a - b)
	const at = (q) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))]
	// CPU time of this process (every thread: V8's GC and compiler too), when measured: on a
	// shared machine it varies less than wall time.
	const cpuS = cpu ? (cpu.user + cpu.system) / 1e6 : undefined
	return {
		nodes,
		seconds: Number(seconds.toFixed(4)),
		nodes_per_s: Number((nodes / seconds).toFixed(1)),
		...(cpuS ? { cpu_s: Number(cpuS.toFixed(4)), nodes_per_cpu_s: Number((nodes / cpuS).toFixed(1)) } : {}),
		p50_ms: Number(at(0.5).toFixed(2)),
		p95_ms: Number(at(0.95).toFixed(2)),
		p99_ms: Number(at(0.99).toFixed(2)),
	}
}

async function memory(shape, size, runs) {
	const blueprint = SHAPES[shape](size)
	const runtime = new FlowRuntime({ registry, blueprints: blueprints(), logger: silent })
	const one = async () => {
		const started = performance.now()
		const result = await runtime.run(blueprint, {})
		if (result.status !== 'completed') throw new Error(`run ended ${result.status}`)
		return performance.now() - started
	}
	await Promise.all(Array.from({ length: runs }, one)) // warm-up: one whole round, for the JIT
	const started = performance.now()
	const cpu = process.cpuUsage()
	const latencies = await Promise.all(Array.from({ length: runs }, one))
	const seconds = (performance.now() - started) / 1000
	return summary(blueprint.nodes.length * runs, seconds, latencies, process.cpuUsage(cpu))
}

async function worker(url, queueName) {
	const connection = new IORedis(url, { maxRetriesPerRequest: null })
	const adapter = new BullMQAdapter({
		connection,
		queueName,
		coordinationStore: new RedisCoordinationStore(connection),
		runtimeOptions: { registry, blueprints: blueprints(), logger: silent },
	})
	adapter.start()
	console.log('ready')
	await new Promise((resolve) => process.once('SIGTERM', resolve))
	await adapter.close()
	await connection.quit()
}

class Client {
	constructor(url, queueName) {
		this.redis = new IORedis(url, { maxRetriesPerRequest: null })
		this.queue = new Queue(queueName, { connection: this.redis })
		this.pending = new Map()
		this.seq = 0
		this.timer = null
	}

	async run(blueprint) {
		const runId = `r${process.pid}-${this.seq++}`
		const started = performance.now()
		const stateKey = `workflow:state:${runId}`
		await this.redis.hset(stateKey, {
			blueprintId: JSON.stringify(blueprint.id),
			blueprintVersion: JSON.stringify(null),
		})
		const targets = new Set(blueprint.edges.map((e) => e.target))
		const starts = blueprint.nodes.filter((n) => !targets.has(n.id))
		await this.queue.addBulk(
			starts.map((n) => ({
				name: 'executeNode',
				data: { runId, blueprintId: blueprint.id, nodeId: n.id },
			})),
		)
		const raw = await new Promise((resolve) => {
			this.pending.set(`workflow:status:${runId}`, resolve)
			this.poll()
		})
		const result = JSON.parse(raw)
		if (result.status !== 'completed') throw new Error(`run ${runId} ${result.status}: ${result.reason}`)
		return performance.now() - started
	}

	poll() {
		if (this.timer !== null) return
		const tick = async () => {
			const keys = [...this.pending.keys()]
			if (keys.length === 0) {
				this.timer = null
				return
			}
			const values = await this.redis.mget(keys)
			keys.forEach((key, i) => {
				if (values[i] !== null) {
					this.pending.get(key)(values[i])
					this.pending.delete(key)
				}
			})
			this.timer = setTimeout(tick, 1)
		}
		this.timer = setTimeout(tick, 1)
	}

	async close() {
		await this.queue.close()
		await this.redis.quit()
	}
}

async function client(url, queueName, shape, size, runs) {
	const blueprint = SHAPES[shape](Number(size))
	const c = new Client(url, queueName)
	const n = Number(runs)
	await Promise.all(Array.from({ length: Math.min(n, 4) }, () => c.run(blueprint))) // warm-up
	const started = performance.now()
	const latencies = await Promise.all(Array.from({ length: n }, () => c.run(blueprint)))
	const seconds = (performance.now() - started) / 1000
	await c.close()
	return summary(blueprint.nodes.length * n, seconds, latencies)
}

async function latency(url, queueName, size, count) {
	const blueprint = chain(Number(size))
	const c = new Client(url, queueName)
	for (let i = 0; i < 5; i++) await c.run(blueprint) // warm-up
	const latencies = []
	const started = performance.now()
	for (let i = 0; i < Number(count); i++) latencies.push(await c.run(blueprint))
	const seconds = (performance.now() - started) / 1000
	await c.close()
	return summary(blueprint.nodes.length * Number(count), seconds, latencies)
}

const [mode, ...args] = process.argv.slice(2)
const modes = {
	memory: (s, n, r) => memory(s, Number(n), Number(r)),
	worker,
	client,
	latency,
}
if (!modes[mode]) {
	console.error(`usage: node bench.mjs {${Object.keys(modes).join('|')}} ...`)
	process.exit(2)
}
const out = await modes[mode](...args)
if (out !== undefined) console.log(JSON.stringify(out))
process.exit(0)
