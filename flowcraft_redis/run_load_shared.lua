-- Inlined where a script names LOAD (after RUN_KEYS): the load of job ``job`` of the run at
-- ``base`` (hash ``run``), reading ARGV[from..to] as the fields of its input, as run_load.lua
-- returns it. HMGET in slices: unpack() of more than a few thousand values overflows Lua's C
-- stack, and a join reads one field per predecessor, however many.
local function load(run, base, job, token, lease_ttl, join, from, to)
    local final = redis.call('GET', base .. {{FINAL}})
    local lease = redis.call('SET', base .. {{LEASE}} .. ':' .. job, token, 'NX', 'PX', lease_ttl)
        and 1 or 0
    local failures = redis.call('SCARD', base .. {{FAILURES}} .. ':' .. job)
    local arrived, live, first = 0, {}, false
    if join then
        arrived = redis.call('SCARD', base .. {{ARRIVED}} .. ':' .. job)
        live = redis.call('SMEMBERS', base .. {{LIVE}} .. ':' .. job)
        first = redis.call('GET', base .. {{FIRST}} .. ':' .. job)
    end
    local values = {}
    for i = from, to, 1000 do
        local part = redis.call('HMGET', run, unpack(ARGV, i, math.min(i + 999, to)))
        for j = 1, #part do
            values[#values + 1] = part[j]
        end
    end
    return {final, lease, failures, arrived, live, first, values}
end
