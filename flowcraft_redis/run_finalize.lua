-- The engine's finalize step in one round trip: the run's final status and its ended record,
-- written once; the run's move in the run index; the latched "done" signal that wakes every
-- waiting client; retention on the run's keys.
--   KEYS   1 final, 2 done signal (a list), 3 active runs (a set), 4 run hash, 5 activated,
--          6.. the run's other bookkeeping keys, then the ended record (last)
--   ARGV   1 final record (JSON), 2 retention (ms), 3 run id, 4 ended record (JSON), 5 status,
--          6 the run index's key prefix, 7 the entered index sets' TTL (ms)
-- Returns 1 if this call wrote the final status, 0 if another had.
-- Names in double braces are rendered at load from flowcraft_core.engine.keys (see
-- flowcraft_redis.connection.SCRIPT_CONSTANTS): never spelled here by hand.
local ACTIVATED, JOB_KEY_KINDS = {{ACTIVATED}}, {{JOB_KEY_KINDS}}
{{INDEX_MOVE}}
local won = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
if won == 1 then
    redis.call('SET', KEYS[#KEYS], ARGV[4], 'NX', 'PX', ARGV[2])
    index_move(KEYS[4], ARGV[6], ARGV[3], ARGV[5], ARGV[7])
end
-- Signalled even when another writer won: it may have died between its write and its signal.
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[3])
for i = 4, #KEYS - 1 do
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
-- Every job's own keys ("<run keys>:<kind>:<job>") go too, found through the activated set
-- (KEYS[5], "<run keys>" .. ACTIVATED).
local base = string.sub(KEYS[5], 1, -#ACTIVATED - 1)
for _, job in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    for _, kind in ipairs(JOB_KEY_KINDS) do
        redis.call('PEXPIRE', base .. kind .. ':' .. job, ARGV[2])
    end
end
return won
