-- The run state's start step in one round trip: refuse a run id whose context exists, else
-- store the run's context (input, metadata, initial keys), pin its blueprint (kept alive by
-- every start), activate its start jobs, all before the caller enqueues them, and enter the
-- run in the run index as running.
--   KEYS   1 run hash, 2 blueprint, 3 activated, 4 active runs, 5 progress, 6-7 the index sets
--          the run enters (by status, by status and blueprint)
--   ARGV   1 TTL (ms), 2 now, 3 run id, 4 blueprint JSON, 5 metadata field, 6 its index
--          member, 7 the index sets' TTL (ms), 8 number of start jobs, then their keys, then
--          the context's field, value (JSON) pairs
-- Returns 1 if the run was stored, 0 if a run with this id exists (nothing written).
local run, ttl = KEYS[1], ARGV[1]
if redis.call('HEXISTS', run, ARGV[5]) == 1 then
    return 0
end
local jobs_to = 8 + tonumber(ARGV[8])
-- One HSET per pair rather than one HSET with unpack(): unpack is bounded by Lua's C stack.
for i = jobs_to + 1, #ARGV, 2 do
    redis.call('HSET', run, ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local created = redis.call('EXISTS', KEYS[3]) == 0
for i = 9, jobs_to do
    redis.call('SADD', KEYS[3], ARGV[i])
end
if created then
    redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('SET', KEYS[5], ARGV[2], 'PX', ttl)
for i = 6, 7 do
    redis.call('SADD', KEYS[i], ARGV[6])
    redis.call('PEXPIRE', KEYS[i], ARGV[7])
end
return 1
