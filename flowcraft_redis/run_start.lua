-- The run state's start step in one round trip: refuse a run id whose context exists, else
-- store the run's input and metadata, pin its blueprint (kept alive by every start) and
-- activate its start jobs, all before the caller enqueues them.
--   KEYS   1 run hash, 2 blueprint, 3 activated, 4 active runs, 5 progress
--   ARGV   1 TTL (ms), 2 now, 3 run id, 4 blueprint JSON, 5 input field, 6 input JSON,
--          7 metadata field, 8 metadata JSON, 9.. the start jobs' keys
-- Returns 1 if the run was stored, 0 if a run with this id exists (nothing written).
local run, ttl = KEYS[1], ARGV[1]
if redis.call('HEXISTS', run, ARGV[7]) == 1 then
    return 0
end
redis.call('HSET', run, ARGV[5], ARGV[6])
redis.call('HSET', run, ARGV[7], ARGV[8])
redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local created = redis.call('EXISTS', KEYS[3]) == 0
for i = 9, #ARGV do
    redis.call('SADD', KEYS[3], ARGV[i])
end
if created then
    redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('SET', KEYS[5], ARGV[2], 'PX', ttl)
return 1
