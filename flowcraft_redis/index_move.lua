-- Inlined into the scripts that finalize a run (where they name INDEX_MOVE): the run index's move of a run
-- from "running" to its final status, as flowcraft_core.engine.state.index_ops writes it (the
-- same sets, members and TTLs), found from the run's metadata in its hash. No KEYS or ARGV of
-- its own: the including script passes them in as
--   run_hash  the run's context hash;  index_base  the index's key prefix (keys.INDEX_BASE)
--   ttl       milliseconds the entered sets are kept (retention plus one bucket)
local function index_move(run_hash, index_base, run_id, status, ttl)
    local raw = redis.call('HGET', run_hash, {{RUN}})
    if not raw then
        return
    end
    local meta = cjson.decode(raw)
    local started = tonumber(meta['started'])
    local bucket = string.format('%d', math.floor(started / {{INDEX_BUCKET_SECONDS}}))
    local member = string.format('%017.6f', started) .. '|' .. run_id
    local flow = tostring(meta['flow'])
    local by_status = index_base .. {{INDEX_STATUS}} .. ':' .. bucket .. ':'
    local by_flow = index_base .. {{INDEX_FLOW}} .. ':' .. bucket .. ':'
    redis.call('SREM', by_status .. {{RUNNING}}, member)
    redis.call('SREM', by_flow .. {{RUNNING}} .. ':' .. flow, member)
    for _, key in ipairs({by_status .. status, by_flow .. status .. ':' .. flow}) do
        redis.call('SADD', key, member)
        redis.call('PEXPIRE', key, ttl)
    end
end
