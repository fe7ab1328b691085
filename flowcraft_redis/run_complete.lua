-- The engine's complete step in one round trip: first-wins commit of a node's result with its
-- context writes, its edges' arrivals at their targets (once per edge), activation of the
-- targets that became ready, the job's finish, and the run's census. Every write is keyed by
-- the job's identity, so running this again for the same job changes nothing twice.
--   KEYS   1 run hash, 2 activated, 3 finished, 4 waiting, 5 resumed, 6 lease, 7 progress,
--          8 final, 9 done signal, 10 active runs, 11-15 the prefetched target's lease,
--          failures, arrived, live and first, 16 the job's history, 17 the run's events,
--          18 its ended record; then per arrival: arrived, live, first
--   ARGV   1 TTL (ms), 2 now, 3 job key, 4 '1' to commit, 5 guard, 6 number of field pairs,
--          7 retention (ms), 8 final record, 9 run id, 10 target to prefetch ('' for none),
--          11 its lease token, 12 its lease TTL (ms), 13 '1' if it is a join, 14 the attempt
--          record to add with the commit ('' for none), 15 the ended record, 16 the run
--          index's key prefix, 17 the entered index sets' TTL (ms), 18 the final status,
--          19 number of the prefetched target's fields, its fields, the pairs, then per
--          arrival: target, edge, live '1'/'0', join, expected count
-- Returns {0} when another commit won (nothing written), else {1, the final record as it was
--         before this call, committed 1/-1, activated, finished, waiting, resumed,
--         finalized 1/0/-1, #ready, target, live, ..., and, if
--         the prefetched target became ready, what run_load.lua returns for it}
-- When this finish leaves nothing to do, the run is finalized here too (as finalize.lua).
-- Prefetching loads the successor a worker will continue with inline, so a chain costs one
-- round trip per node instead of two.
-- Names in double braces are rendered at load from flowcraft_core.engine.keys (see
-- flowcraft_redis.connection.SCRIPT_CONSTANTS): never spelled here by hand.
local ACTIVATED, JOB_KEY_KINDS, JOIN_ANY = {{ACTIVATED}}, {{JOB_KEY_KINDS}}, {{JOIN_ANY}}
{{INDEX_MOVE}}
local ttl = ARGV[1]
local run = KEYS[1]
local committed = -1
local pairs_count = tonumber(ARGV[6])
local prefetch = ARGV[10]
local field_count = tonumber(ARGV[19])
local pairs_from = 20 + field_count
if ARGV[4] == '1' then
    if redis.call('HEXISTS', run, ARGV[5]) == 1 then
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
if committed == 1 and ARGV[14] ~= '' then
    add(KEYS[16], ARGV[14])
end

-- Every job's own keys ("<run keys>:<kind>:<job>") go with the run: found through the
-- activated set, whose name is "<run keys>" .. ACTIVATED.
local function expire_jobs(activated_key, retention)
    local base = string.sub(activated_key, 1, -#ACTIVATED - 1)
    for _, job in ipairs(redis.call('SMEMBERS', activated_key)) do
        for _, kind in ipairs(JOB_KEY_KINDS) do
            redis.call('PEXPIRE', base .. kind .. ':' .. job, retention)
        end
    end
end

local ready = {}
local a = pairs_from + 2 * pairs_count
local k = 19
while a <= #ARGV do
    local target, edge, is_live, join, expected =
        ARGV[a], ARGV[a + 1], ARGV[a + 2] == '1', ARGV[a + 3], tonumber(ARGV[a + 4])
    local arrived_key, live_key, first_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local added = add(arrived_key, edge) == 1
    local total = redis.call('SCARD', arrived_key)
    local first = false
    if is_live then
        add(live_key, edge)
        if join == JOIN_ANY then
            first = redis.call('SET', first_key, edge, 'NX', 'PX', ttl) and true or false
        end
    end
    local live = redis.call('SCARD', live_key)
    -- The same rule as flowcraft_core.engine.state.decide (the conformance contract "run state"
    -- checks that they agree): a repeated arrival reports readiness again, so a crash between
    -- recording and enqueueing is recovered.
    local verdict = nil
    if join == JOIN_ANY then
        if is_live and (first or not added) then
            verdict = '1'
        elseif total >= expected and live == 0 then
            verdict = '0'
        end
    elseif total >= expected then
        verdict = live > 0 and '1' or '0'
    end
    if verdict then
        ready[#ready + 1] = target
        ready[#ready + 1] = verdict
    end
    a = a + 5
    k = k + 3
end

-- Ready targets are activated before this job finishes, in this same atomic step, so the
-- count of activated-but-unfinished jobs never reaches zero while work remains.
for i = 1, #ready, 2 do
    add(KEYS[2], ready[i])
end
add(KEYS[3], ARGV[3])
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[7], ARGV[2], 'PX', ttl)
local final = redis.call('GET', KEYS[8])
local activated, finished = redis.call('SCARD', KEYS[2]), redis.call('SCARD', KEYS[3])
local waiting, resumed = redis.call('SCARD', KEYS[4]), redis.call('SCARD', KEYS[5])
local finalized = -1
if activated - finished <= 0 then
    local retention = ARGV[7]
    finalized = redis.call('SET', KEYS[8], ARGV[8], 'NX', 'PX', retention) and 1 or 0
    if finalized == 1 then
        redis.call('SET', KEYS[18], ARGV[15], 'NX', 'PX', retention)
        index_move(run, ARGV[16], ARGV[9], ARGV[18], ARGV[17])
    end
    redis.call('DEL', KEYS[9])
    redis.call('RPUSH', KEYS[9], '1')
    redis.call('PEXPIRE', KEYS[9], retention)
    redis.call('SREM', KEYS[10], ARGV[9])
    for _, key in ipairs({run, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[17]}) do
        redis.call('PEXPIRE', key, retention)
    end
    expire_jobs(KEYS[2], retention)
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
    -- As run_load.lua, for the target: final status, lease, failures, join state, fields.
    out[#out + 1] = redis.call('GET', KEYS[8])
    out[#out + 1] = redis.call('SET', KEYS[11], ARGV[11], 'NX', 'PX', ARGV[12]) and 1 or 0
    out[#out + 1] = redis.call('SCARD', KEYS[12])
    if ARGV[13] == '1' then
        out[#out + 1] = redis.call('SCARD', KEYS[13])
        out[#out + 1] = redis.call('SMEMBERS', KEYS[14])
        out[#out + 1] = redis.call('GET', KEYS[15])
    else
        out[#out + 1] = 0
        out[#out + 1] = {}
        out[#out + 1] = false
    end
    -- In slices, as in run_load.lua: unpack() is bounded by Lua's C stack.
    local values = {}
    for i = 20, 19 + field_count, 1000 do
        local last = math.min(i + 999, 19 + field_count)
        local part = redis.call('HMGET', run, unpack(ARGV, i, last))
        for j = 1, #part do
            values[#values + 1] = part[j]
        end
    end
    out[#out + 1] = values
end
return out
