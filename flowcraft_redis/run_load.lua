-- The engine's load step in one round trip: the run's final status, the job's lease, its
-- failed attempts, its join bookkeeping and the context fields its input needs.
--   KEYS   1 run hash, 2 final, 3 lease, 4 failures [, 5 arrived, 6 live, 7 first]
--   ARGV   1 lease token, 2 lease TTL (ms), 3 '1' when the join keys are given, 4.. fields
-- Returns {final|false, lease taken 0/1, failures, arrived, {live...}, first|false, {values}}
local final = redis.call('GET', KEYS[2])
local lease = redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
local failures = redis.call('SCARD', KEYS[4])
local arrived, live, first = 0, {}, false
if ARGV[3] == '1' then
    arrived = redis.call('SCARD', KEYS[5])
    live = redis.call('SMEMBERS', KEYS[6])
    first = redis.call('GET', KEYS[7])
end
-- HMGET in slices: unpack() of more than a few thousand values overflows Lua's C stack, and a
-- join reads one field per predecessor, however many.
local values = {}
for i = 4, #ARGV, 1000 do
    local part = redis.call('HMGET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
    for j = 1, #part do
        values[#values + 1] = part[j]
    end
end
return {final, lease, failures, arrived, live, first, values}
