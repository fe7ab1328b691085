-- Inlined where a script names FINALIZE (after RUN_KEYS and INDEX_MOVE); no KEYS or ARGV of
-- its own. The writes every finalization makes, from a fused complete or an explicit finalize:
-- the final status and the ended record, first-wins; the run index's move; the latched "done" signal (signalled even
-- when another writer won: it may have died between its write and its signal); the run's
-- leaving the active runs; retention on its context, its run-wide keys (RUN_WIDE, the list
-- flowcraft_core.engine.keys.RunKeys.run_wide is made of) and every job's own keys, found
-- through the activated set. Returns 1 if this call wrote the final status, else 0.
local function finalize(run_id, base, status, final_json, ended_json, retention)
    local run = context_key(run_id)
    local won = redis.call('SET', base .. {{FINAL}}, final_json, 'NX', 'PX', retention) and 1 or 0
    if won == 1 then
        redis.call('SET', base .. {{ENDED}}, ended_json, 'NX', 'PX', retention)
        index_move(run, CO .. {{INDEX_BASE}}, run_id, status,
            tonumber(retention) + {{INDEX_BUCKET_SECONDS}} * 1000)
    end
    local done = signal_key(base)
    redis.call('DEL', done)
    redis.call('RPUSH', done, '1')
    redis.call('PEXPIRE', done, retention)
    redis.call('SREM', CO .. {{ACTIVE_RUNS}}, run_id)
    redis.call('PEXPIRE', run, retention)
    for _, name in ipairs({{RUN_WIDE}}) do
        redis.call('PEXPIRE', base .. name, retention)
    end
    for _, job in ipairs(redis.call('SMEMBERS', base .. {{ACTIVATED}})) do
        for _, kind in ipairs({{JOB_KEY_KINDS}}) do
            redis.call('PEXPIRE', base .. kind .. ':' .. job, retention)
        end
    end
    return won
end
