-- The engine's load step in one round trip: the run's final status, the job's lease, its
-- failed attempts, its join bookkeeping and the context fields its input needs.
--   KEYS   none: every key is derived from the run id and the job key (run_keys.lua)
--   ARGV   1 run id, 2 job key, 3 lease token, 4 lease TTL (ms), 5 '1' for a join's state,
--          6.. fields
-- Returns {final|false, lease taken 0/1, failures, arrived, {live...}, first|false, {values}}
{{RUN_KEYS}}
{{LOAD}}
local run_id = ARGV[1]
return load(context_key(run_id), run_base(run_id), ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1', 6,
    #ARGV)
