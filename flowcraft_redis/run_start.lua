-- The run state's start step in one round trip: refuse a run id whose context exists, else
-- store the run's context (input, metadata, initial keys), pin its blueprint (kept alive by
-- every start), activate its start jobs, all before the caller enqueues them, and enter the
-- run in the run index as running.
--   KEYS   none: the run's keys are derived from its id (run_keys.lua)
--   ARGV   1 run id, 2 TTL (ms), 3 now, 4 blueprint digest, 5 blueprint JSON, 6 the run's
--          index member, 7 the index sets' TTL (ms), 8-9 the index sets the run enters (by
--          status, by status and blueprint), 10 number of start jobs, then their keys, then
--          the context's field, value (JSON) pairs
-- Returns 1 if the run was stored, 0 if a run with this id exists (nothing written).
{{RUN_KEYS}}
local run_id, ttl = ARGV[1], ARGV[2]
local run, base = context_key(run_id), run_base(run_id)
if redis.call('HEXISTS', run, {{RUN}}) == 1 then
    return 0
end
local jobs_to = 10 + tonumber(ARGV[10])
-- One HSET per pair rather than one HSET with unpack(): unpack is bounded by Lua's C stack.
for i = jobs_to + 1, #ARGV, 2 do
    redis.call('HSET', run, ARGV[i], ARGV[i + 1])
end
local blueprint = CO .. {{BLUEPRINT_BASE}} .. ARGV[4]
redis.call('SET', blueprint, ARGV[5], 'NX', 'PX', ttl)
redis.call('PEXPIRE', blueprint, ttl)
local activated = base .. {{ACTIVATED}}
local created = redis.call('EXISTS', activated) == 0
for i = 11, jobs_to do
    redis.call('SADD', activated, ARGV[i])
end
if created then
    redis.call('PEXPIRE', activated, ttl)
end
redis.call('SADD', CO .. {{ACTIVE_RUNS}}, run_id)
redis.call('SET', base .. {{PROGRESS}}, ARGV[3], 'PX', ttl)
for i = 8, 9 do
    redis.call('SADD', ARGV[i], ARGV[6])
    redis.call('PEXPIRE', ARGV[i], ARGV[7])
end
return 1
