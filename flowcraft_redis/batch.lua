-- Runs a list of coordination operations atomically, in order, in one round trip.
--   KEYS[i]                 the key of operation i
--   ARGV[4i-3 .. 4i]        its name, value, amount and TTL in milliseconds ('' for none)
-- Returns one reply per operation (see RedisCoordinationStore.batch for their shapes).
--
-- Reads of a key holding the other type (a string where a set is expected, or the reverse)
-- answer as if it were absent, as the reference model does; writes let Redis raise WRONGTYPE.
local results = {}

local function type_of(key)
    return redis.call('TYPE', key)['ok']
end

for i = 1, #KEYS do
    local key = KEYS[i]
    local base = (i - 1) * 4
    local name = ARGV[base + 1]
    local value = ARGV[base + 2]
    local amount = ARGV[base + 3]
    local ttl = ARGV[base + 4]
    local reply

    if name == 'get' then
        if type_of(key) == 'string' then
            reply = redis.call('GET', key)
        else
            reply = false
        end
    elseif name == 'set' then
        if ttl == '' then
            redis.call('SET', key, value)
        else
            redis.call('SET', key, value, 'PX', ttl)
        end
        reply = 1
    elseif name == 'set_if_absent' then
        local done
        if ttl == '' then
            done = redis.call('SET', key, value, 'NX')
        else
            done = redis.call('SET', key, value, 'NX', 'PX', ttl)
        end
        reply = done and 1 or 0
    elseif name == 'incr' then
        local created = redis.call('EXISTS', key) == 0
        reply = redis.call('INCRBY', key, amount)
        -- The TTL belongs to the counter's lifetime, not to each increment.
        if created and ttl ~= '' then
            redis.call('PEXPIRE', key, ttl)
        end
    elseif name == 'delete' then
        reply = redis.call('DEL', key)
    elseif name == 'add_member' then
        local created = redis.call('EXISTS', key) == 0
        local added = redis.call('SADD', key, value)
        if created and ttl ~= '' then
            redis.call('PEXPIRE', key, ttl)
        end
        reply = {added, redis.call('SCARD', key)}
    elseif name == 'remove_member' then
        if type_of(key) == 'set' then
            reply = redis.call('SREM', key, value)
        else
            reply = 0
        end
    elseif name == 'count' then
        if type_of(key) == 'set' then
            reply = redis.call('SCARD', key)
        else
            reply = 0
        end
    elseif name == 'members' then
        if type_of(key) == 'set' then
            reply = redis.call('SMEMBERS', key)
        else
            reply = {}
        end
    elseif name == 'extend' then
        reply = redis.call('PEXPIRE', key, ttl)
    else
        return redis.error_reply('unknown coordination op ' .. tostring(name))
    end
    results[i] = reply
end
return results
