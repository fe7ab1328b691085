-- The engine's complete step in one round trip: first-wins commit of a node's result with its
-- context writes, its edges' arrivals at their targets (once per edge), activation of the
-- targets that became ready, the job's finish, and the run's census. Every write is keyed by
-- the job's identity, so running this again for the same job changes nothing twice.
--   KEYS   none: every key is derived from the run id and job keys (run_keys.lua)
--   ARGV   1 run id, 2 job key, 3 now, 4 TTL (ms), 5 retention (ms), 6 guard ('' for no
--          commit), 7 number of field pairs, 8 the attempt record to add with the commit
--          ('' for none), 9 target to prefetch ('' for none), 10 its lease token, 11 its lease
--          TTL (ms), 12 '1' if it is a join, 13 number of its fields, then its fields, then
--          the field pairs, then per arrival: target, edge, live '1'/'0', join, expected count
-- Returns {0} when another commit won (nothing written), else {1, the final record as it was
--         before this call, committed 1/-1, activated, finished, waiting, resumed,
--         finalized 1/0/-1, #ready, target, live, ..., and, if
--         the prefetched target became ready, what run_load.lua returns for it}
-- When this finish leaves nothing to do, the run is finalized here too (as run_finalize.lua).
-- Prefetching loads the successor a worker will continue with inline, so a chain costs one
-- round trip per node instead of two.
-- Names in double braces are rendered at load from flowcraft_core (see
-- flowcraft_redis.connection.SCRIPT_CONSTANTS): never spelled here by hand; the join decision
-- and the "done" test among them (flowcraft_core.engine.rules).
{{RUN_KEYS}}
{{INDEX_MOVE}}
{{FINALIZE}}
{{LOAD}}
{{DECIDE}}
local run_id, job, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run, base = context_key(run_id), run_base(run_id)
local guard = ARGV[6]
local pairs_count = tonumber(ARGV[7])
local prefetch = ARGV[9]
local field_count = tonumber(ARGV[13])
local pairs_from = 14 + field_count
local committed = -1
if guard ~= '' then
    if redis.call('HEXISTS', run, guard) == 1 then
        return {0}
    end
    for i = pairs_from, pairs_from - 1 + 2 * pairs_count, 2 do
        redis.call('HSET', run, ARGV[i], ARGV[i + 1])
    end
    committed = 1
end

local function add(key, member)
    local created = redis.call('EXISTS', key) == 0
    local added = redis.call('SADD', key, member)
    if created then
        redis.call('PEXPIRE', key, ttl)
    end
    return added
end

-- Only the winning commit records its attempt: a redelivery never records a second execution.
if committed == 1 and ARGV[8] ~= '' then
    add(base .. {{HISTORY}} .. ':' .. job, ARGV[8])
end

local ready = {}
for a = pairs_from + 2 * pairs_count, #ARGV, 5 do
    local target, edge, is_live, join, expected =
        ARGV[a], ARGV[a + 1], ARGV[a + 2] == '1', ARGV[a + 3], tonumber(ARGV[a + 4])
    local arrived_key = base .. {{ARRIVED}} .. ':' .. target
    local live_key = base .. {{LIVE}} .. ':' .. target
    local added = add(arrived_key, edge) == 1
    local total = redis.call('SCARD', arrived_key)
    local first = false
    if is_live then
        add(live_key, edge)
        if join == {{JOIN_ANY}} then
            first = redis.call('SET', base .. {{FIRST}} .. ':' .. target, edge, 'NX', 'PX', ttl)
                and true or false
        end
    end
    local verdict = decide(join, is_live, added, first, total, expected,
        redis.call('SCARD', live_key))
    if verdict ~= nil then
        ready[#ready + 1] = target
        ready[#ready + 1] = verdict and '1' or '0'
    end
end

-- Ready targets are activated before this job finishes, in this same atomic step, so the
-- count of activated-but-unfinished jobs never reaches zero while work remains.
local activated_key = base .. {{ACTIVATED}}
for i = 1, #ready, 2 do
    add(activated_key, ready[i])
end
add(base .. {{FINISHED}}, job)
redis.call('DEL', base .. {{LEASE}} .. ':' .. job)
redis.call('SET', base .. {{PROGRESS}}, now, 'PX', ttl)
local final = redis.call('GET', base .. {{FINAL}})
local activated, finished = redis.call('SCARD', activated_key), redis.call('SCARD', base .. {{FINISHED}})
local waiting = redis.call('SCARD', base .. {{WAITING}})
local resumed = redis.call('SCARD', base .. {{RESUMED}})
local finalized = -1
if {{RUN_DONE}} then
    finalized = finalize(run_id, base, {{COMPLETED}}, {{FINAL_COMPLETED}},
        {{ENDED_HEAD}} .. now .. {{ENDED_TAIL}}, ARGV[5])
end
local out = {1, final, committed, activated, finished, waiting, resumed, finalized, #ready / 2}
local prefetched = false
for i = 1, #ready do
    out[#out + 1] = ready[i]
    if i % 2 == 1 and ready[i] == prefetch and ready[i + 1] == '1' then
        prefetched = true
    end
end
if prefetched then
    -- As run_load.lua, for the target.
    for _, value in ipairs(load(run, base, prefetch, ARGV[10], ARGV[11], ARGV[12] == '1', 14,
            13 + field_count)) do
        out[#out + 1] = value
    end
end
return out
