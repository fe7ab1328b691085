-- First-wins commit of a run's context writes.
--   KEYS[1]  the run's hash
--   ARGV[1]  the guard field; ARGV[2..] field, value pairs (JSON text)
-- Returns 1 if the writes were applied, 0 if the guard was already there (nothing written).
local run = KEYS[1]
local guard = ARGV[1]
if redis.call('HEXISTS', run, guard) == 1 then
    return 0
end
-- One HSET per pair rather than one HSET with unpack(): unpack is bounded by Lua's C stack.
for i = 2, #ARGV, 2 do
    redis.call('HSET', run, ARGV[i], ARGV[i + 1])
end
-- The guard is what makes a repeated commit a no-op, so it must exist even if the caller
-- did not write it; JSON null, as the in-memory driver does.
if redis.call('HEXISTS', run, guard) == 0 then
    redis.call('HSET', run, guard, 'null')
end
return 1
