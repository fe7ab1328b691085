-- Inlined into the run-state scripts (where they name RUN_KEYS): the names of a run's keys,
-- derived here from its id exactly as flowcraft_core.engine.keys.RunKeys and the stores' key()
-- methods make them; the prefixes are rendered per connection (flowcraft_redis.run_state).
-- No KEYS or ARGV of its own. The scripts touch keys they do not declare, which is why Redis
-- Cluster is out of scope (README).
local CO = {{CO}}
local function context_key(run_id)
    return {{CTX}} .. run_id
end
-- "<run keys>": every run-wide key is this plus its name, every job key this plus its kind,
-- ':' and the job key.
local function run_base(run_id)
    return CO .. {{RUN_BASE_HEAD}} .. run_id .. {{RUN_BASE_TAIL}}
end
local function signal_key(base)
    return {{SIG}} .. string.sub(base, #CO + 1) .. {{SIGNAL_DONE}}
end
