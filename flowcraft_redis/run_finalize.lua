-- The engine's finalize step in one round trip: the run's final status and its ended record,
-- written once; the run's move in the run index; the latched "done" signal that wakes every
-- waiting client; retention on the run's keys (see run_finalize_shared.lua).
--   KEYS   none: every key is derived from the run id (run_keys.lua)
--   ARGV   1 run id, 2 status, 3 final record (JSON), 4 ended record (JSON), 5 retention (ms)
-- Returns 1 if this call wrote the final status, 0 if another had.
-- Names in double braces are rendered at load from flowcraft_core (see
-- flowcraft_redis.connection.SCRIPT_CONSTANTS): never spelled here by hand.
{{RUN_KEYS}}
{{INDEX_MOVE}}
{{FINALIZE}}
local run_id = ARGV[1]
return finalize(run_id, run_base(run_id), ARGV[2], ARGV[3], ARGV[4], ARGV[5])
