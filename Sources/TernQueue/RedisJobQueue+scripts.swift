import TernRedis

// The queue's state changes, each one Lua script run atomically on the server. KEYS[1] is the
// queue's key prefix `tern:{NAME}:`; every key a script touches starts with it, so all of them
// share the queue's hash tag and a script stays in one Redis Cluster slot.
//
// Keys under the prefix:
//   job:ID                hash: type tenant lane payload attempt maxAttempts provider tokens
//                         state enqueuedAt readyAt startedAt finishedAt lease worker error cancel key
//   ready:LANE:TENANT     list of ready job ids of one tenant in one lane
//   tenants:LANE          list of the tenants with ready jobs in the lane, in round-robin order
//   backlog               list whose length is exactly the number of ready jobs (for autoscalers)
//   wake                  list that waiting workers block on (BLPOP); an element per new chance
//   delayed               zset id -> time it becomes ready (delayed jobs, retries after backoff)
//   active                zset id -> time its lease expires
//   completed failed cancelled   zsets id -> time it ended (trimmed by age and count)
//   inflight:PROVIDER     zset id -> lease expiry, the provider's running jobs (concurrency cap)
//   rate:PROVIDER:requests, rate:PROVIDER:tokens   the rate limits' next free time (GCRA)
//   limits                hash PROVIDER:concurrency|rpm|tpm|burst
//   idem:KEY              the job enqueued under an idempotency key
//   events:ID             the job's event stream
//   totals                hash of counters (enqueued, completed, failed, retried, stalled, ...)
//   workers               zset worker -> heartbeat expiry; worker-types: hash worker -> types
//   cancel                pub/sub channel: ids of active jobs to stop
extension RedisJobQueue {
    /// Helpers shared by the scripts.
    static let prelude = RedisScript.gcra + """
        local p = KEYS[1]
        -- Numbers given to redis.call are formatted with printf; the hot paths pass strings
        -- (literals in quotes, the clock as text) to spare the server that work.
        local clock = redis.call('TIME')
        local now_text = clock[1] .. string.sub(string.sub('000000' .. clock[2], -6), 1, 3)
        local function now_ms()
          return tonumber(now_text)
        end
        local function event(id, retention, ...)
          local key = p .. 'events:' .. id
          redis.call('XADD', key, 'MAXLEN', '~', '100000', '*', ...)
          redis.call('PEXPIRE', key, retention)
          redis.call('PUBLISH', key, '1')
        end
        local function wake()
          if redis.call('LPUSH', p .. 'wake', '1') > 64 then redis.call('LTRIM', p .. 'wake', 0, 63) end
        end
        -- Puts a job in its tenant's ready line; `marked`: its state and readyAt are set already.
        -- Call wake_once() before returning: one wake-up per script run, not per job.
        local made_ready = false
        local function make_ready(id, lane, tenant, front, now, marked)
          local list = p .. 'ready:' .. lane .. ':' .. tenant
          local n
          if front then n = redis.call('LPUSH', list, id) else n = redis.call('RPUSH', list, id) end
          if n == 1 then redis.call('RPUSH', p .. 'tenants:' .. lane, tenant) end
          redis.call('RPUSH', p .. 'backlog', '1')
          -- A job put back at the front keeps its readyAt: it has waited since then.
          if front then
            redis.call('HSET', p .. 'job:' .. id, 'state', 'ready')
          elseif not marked then
            redis.call('HSET', p .. 'job:' .. id, 'state', 'ready', 'readyAt', now_text)
          end
          made_ready = true
        end
        local function wake_once()
          if made_ready then wake() end
        end
        local function trim(set, now, retention, keep)
          local old = redis.call('ZRANGEBYSCORE', p .. set, '-inf', now - retention, 'LIMIT', 0, 100)
          local extra = redis.call('ZCARD', p .. set) - keep
          if extra > 0 then
            for _, id in ipairs(redis.call('ZRANGE', p .. set, 0, math.min(extra, 100) - 1)) do table.insert(old, id) end
          end
          for _, id in ipairs(old) do
            redis.call('ZREM', p .. set, id)
            redis.call('DEL', p .. 'job:' .. id)
          end
        end
        -- Ends a job that is no longer ready, delayed or active: state, set, counter, event.
        local function finish(id, state, now, retentions, ...)
          local job = p .. 'job:' .. id
          redis.call('HSET', job, 'state', state, 'finishedAt', now)
          redis.call('ZADD', p .. state, now, id)
          -- Trimming looks at 100 old jobs, so once every 100 ends keeps up.
          if redis.call('HINCRBY', p .. 'totals', state, 1) % 100 == 0 then trim(state, now, retentions[2], retentions[3]) end
          event(id, retentions[1], ...)
        end
        -- Frees what an active job holds: its lease and its provider slot.
        local function leave_active(id, provider)
          redis.call('ZREM', p .. 'active', id)
          if provider and provider ~= '' then
            if redis.call('ZREM', p .. 'inflight:' .. provider, id) == 1 then wake() end
          end
        end
        local function owned(id, lease)
          local f = redis.call('HMGET', p .. 'job:' .. id, 'lease', 'state', 'provider', 'attempt', 'maxAttempts', 'lane', 'tenant', 'startedAt', 'tokens', 'cancel')
          if f[1] ~= lease or f[2] ~= 'active' then return nil end
          return f
        end

        """

    /// ARGV: maxBacklog eventRetentionMs idempotencyRetentionMs, then per job: id type tenant
    /// lane payload maxAttempts delayMs idempotencyKey provider tokens. Returns per job
    /// {outcome, id}: enqueued, existing or full.
    static let enqueueScript = RedisScript(prelude + """
        local now = now_ms()
        local maxBacklog, eventRetention, keyRetention = tonumber(ARGV[1]), ARGV[2], ARGV[3]
        local result = {}
        local added = 0
        for at = 4, #ARGV, 10 do
          local id, jtype, tenant, lane, payload, attempts, delay, key, provider, tokens =
            ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5], tonumber(ARGV[at + 6]), ARGV[at + 7], ARGV[at + 8], ARGV[at + 9]
          local existing = key ~= '' and redis.call('GET', p .. 'idem:' .. key)
          if existing then
            table.insert(result, 'existing'); table.insert(result, existing)
          elseif redis.call('EXISTS', p .. 'job:' .. id) == 1 then
            table.insert(result, 'existing'); table.insert(result, id)
          elseif maxBacklog > 0 and redis.call('LLEN', p .. 'backlog') + redis.call('ZCARD', p .. 'delayed') >= maxBacklog then
            table.insert(result, 'full'); table.insert(result, '')
          else
            local state = 'ready'
            if delay > 0 then state = 'delayed' end
            redis.call('HSET', p .. 'job:' .. id, 'type', jtype, 'tenant', tenant, 'lane', lane, 'payload', payload,
              'attempt', '0', 'maxAttempts', attempts, 'provider', provider, 'tokens', tokens, 'enqueuedAt', now_text, 'key', key,
              'state', state, 'readyAt', now_text)
            if key ~= '' then redis.call('SET', p .. 'idem:' .. key, id, 'PX', keyRetention) end
            event(id, eventRetention, 'type', 'queued')
            if delay > 0 then
              redis.call('ZADD', p .. 'delayed', now + delay, id)
            else
              make_ready(id, lane, tenant, false, now, true)
            end
            added = added + 1
            table.insert(result, 'enqueued'); table.insert(result, id)
          end
        end
        if added > 0 then redis.call('HINCRBY', p .. 'totals', 'enqueued', added) end
        wake_once()
        return result
        """)

    /// ARGV: worker maximum leaseMs eventRetentionMs retentionMs keep. Recovers expired leases,
    /// promotes due delayed jobs, then claims. Returns {limitedForMs, nextDueMs, fields of each
    /// claimed job...} (-1 for none).
    static let claimScript = RedisScript(prelude + """
        local now = now_ms()
        local worker, maximum, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
        local retentions = {ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])}
        -- A batch claim: the jobs of one provider go upstream as one request, so the first one
        -- (the leader) takes the provider's slot and request, and the others ride along.
        local batch = ARGV[7] == '1'
        local leaders = {}
        -- Jobs whose worker stopped renewing: run again, or give up after the last attempt.
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'active', '-inf', now, 'LIMIT', 0, 100)) do
          local job = p .. 'job:' .. id
          local f = redis.call('HMGET', job, 'provider', 'attempt', 'maxAttempts', 'lane', 'tenant', 'cancel')
          leave_active(id, f[1])
          redis.call('HINCRBY', p .. 'totals', 'stalled', 1)
          if f[6] == '1' then
            finish(id, 'cancelled', now, retentions, 'type', 'cancelled')
          elseif tonumber(f[2]) >= tonumber(f[3]) then
            local reason = 'the worker stopped during attempt ' .. f[2] .. ' of ' .. f[3]
            redis.call('HSET', job, 'error', reason)
            redis.call('HINCRBY', p .. 'totals', 'failed:worker_lost', 1)
            finish(id, 'failed', now, retentions, 'type', 'error', 'code', 'job_failed', 'message', reason)
          else
            redis.call('HSET', job, 'error', 'the worker stopped during attempt ' .. f[2])
            make_ready(id, f[4], f[5], true, now)
          end
        end
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 100)) do
          redis.call('ZREM', p .. 'delayed', id)
          local f = redis.call('HMGET', p .. 'job:' .. id, 'lane', 'tenant')
          if f[1] then make_ready(id, f[1], f[2], false, now) end
        end

        -- 0 when a job of the provider may start now (and the start is recorded); otherwise
        -- how many milliseconds until one may.
        local function admit(id, provider, tokens)
          if not provider or provider == '' then return 0 end
          local c = redis.call('HMGET', p .. 'limits', provider .. ':concurrency', provider .. ':rpm', provider .. ':tpm', provider .. ':burst')
          local inflight = p .. 'inflight:' .. provider
          local leader = batch and leaders[provider]
          if leader then c[1] = false; c[2] = false end
          if c[1] then
            redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
            if redis.call('ZCARD', inflight) >= tonumber(c[1]) then
              local first = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
              return math.max(1, math.min(1000, tonumber(first[2]) - now))
            end
          end
          local burst = tonumber(c[4] or '1')
          local requestKey, requestNext, tokenKey, tokenNext
          if c[2] then
            local interval = 60000 / tonumber(c[2])
            requestKey = p .. 'rate:' .. provider .. ':requests'
            local wait
            wait, requestNext = gcra(requestKey, interval, burst, now)
            if wait > 0 then return math.ceil(wait) end
          end
          if c[3] and tokens > 0 then
            tokens = math.min(tokens, tonumber(c[3]))  -- a job larger than the bucket waits for a full one
            local interval = 60000 / tonumber(c[3])
            tokenKey = p .. 'rate:' .. provider .. ':tokens'
            local tat = math.max(tonumber(redis.call('GET', tokenKey) or '0'), now)
            -- A bucket of one minute's tokens: a job may start while the debt stays within it.
            local wait = tat + tokens * interval - 60000 - now
            if wait > 0 then return math.ceil(wait) end
            tokenNext = tat + tokens * interval
          end
          if c[1] then redis.call('ZADD', inflight, now + lease, id) end
          if requestKey then redis.call('SET', requestKey, requestNext, 'PX', math.ceil(requestNext - now) + 60000) end
          if tokenKey then redis.call('SET', tokenKey, tokenNext, 'PX', math.ceil(tokenNext - now) + 60000) end
          if leader then
            redis.call('HSET', p .. 'job:' .. id, 'slot', leader)
          else
            redis.call('HDEL', p .. 'job:' .. id, 'slot')
            if batch then leaders[provider] = id end
          end
          return 0
        end

        local result = {-1, -1}
        local claimed = 0
        for lane = 0, 1 do
          local tenants = p .. 'tenants:' .. lane
          -- Tenants blocked by a limit are passed over (to the back of the line) at most this often.
          local passes = math.min(redis.call('LLEN', tenants), 32)
          while claimed < maximum do
            local tenant = redis.call('LPOP', tenants)
            if not tenant then break end
            local list = p .. 'ready:' .. lane .. ':' .. tenant
            local id = redis.call('LPOP', list)
            if id then
              local job = p .. 'job:' .. id
              local j = redis.call('HMGET', job, 'type', 'tenant', 'payload', 'maxAttempts', 'provider', 'enqueuedAt', 'tokens', 'attempt')
              local wait = admit(id, j[5], tonumber(j[7]) or 0)
              if wait > 0 then
                redis.call('LPUSH', list, id)
                redis.call('RPUSH', tenants, tenant)
                if result[1] < 0 or wait < result[1] then result[1] = wait end
                passes = passes - 1
                if passes <= 0 then break end
              else
                redis.call('LPOP', p .. 'backlog')
                if redis.call('LLEN', list) > 0 then redis.call('RPUSH', tenants, tenant) end
                local attempt = tonumber(j[8]) + 1
                -- Unique per claim (a released job keeps its attempt number, not its token).
                local token = worker .. '#' .. redis.call('HINCRBY', job, 'claims', 1)
                redis.call('HSET', job, 'attempt', attempt, 'state', 'active', 'lease', token, 'worker', worker, 'startedAt', now_text)
                redis.call('ZADD', p .. 'active', now + lease, id)
                for _, v in ipairs({id, j[1], j[2], j[3], attempt, j[4], j[5], token, j[6], now}) do table.insert(result, v) end
                claimed = claimed + 1
              end
            end
          end
        end
        if claimed > 0 then
          redis.call('HINCRBY', p .. 'totals', 'started', claimed)
        else
          -- Nothing to claim: the wake-ups left from while no worker waited are spent, and a
          -- worker that waits next would only spin through them.
          redis.call('DEL', p .. 'wake')
        end
        wake_once()
        local due = redis.call('ZRANGE', p .. 'delayed', 0, 0, 'WITHSCORES')
        if due[2] then result[2] = math.max(0, tonumber(due[2]) - now) end
        return result
        """)

    /// ARGV: leaseMs, then per job: id lease. Returns per job 0 renewed, 1 renewed but cancel
    /// requested, -1 lost.
    static let renewScript = RedisScript(prelude + """
        local expiry = now_ms() + tonumber(ARGV[1])
        local result = {}
        for at = 2, #ARGV, 2 do
          local id, lease = ARGV[at], ARGV[at + 1]
          local f = redis.call('HMGET', p .. 'job:' .. id, 'lease', 'state', 'cancel', 'provider', 'slot')
          if f[1] ~= lease or f[2] ~= 'active' then
            table.insert(result, -1)
          else
            redis.call('ZADD', p .. 'active', 'XX', expiry, id)
            -- Re-added if the claim's cleanup dropped it after an outage: a running job holds its
            -- slot. A batch's other jobs keep their leader's slot only while the leader holds it.
            if f[4] and f[4] ~= '' and redis.call('HEXISTS', p .. 'limits', f[4] .. ':concurrency') == 1 then
              if f[5] then
                redis.call('ZADD', p .. 'inflight:' .. f[4], 'XX', expiry, f[5])
              else
                redis.call('ZADD', p .. 'inflight:' .. f[4], expiry, id)
              end
            end
            if f[3] == '1' then table.insert(result, 1) else table.insert(result, 0) end
          end
        end
        return result
        """)

    /// ARGV: eventRetentionMs retentionMs keep, then per job: id lease tokens (-1 unknown).
    /// Returns per job 1, or 0 if the lease was lost.
    static let completeScript = RedisScript(prelude + """
        local now = now_ms()
        local retentions = {ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])}
        local result = {}
        local ended, runMs = {}, 0
        for at = 4, #ARGV, 3 do
          local id, lease, actual = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
          local f = owned(id, lease)
          if not f then
            table.insert(result, 0)
          else
            leave_active(id, f[3])
            if actual >= 0 and f[3] ~= '' then
              -- Give back (or charge) the difference between the declared and the real tokens.
              local tpm = redis.call('HGET', p .. 'limits', f[3] .. ':tpm')
              local key = p .. 'rate:' .. f[3] .. ':tokens'
              local tat = redis.call('GET', key)
              if tpm and tat then
                local charged = math.min(tonumber(f[9]) or 0, tonumber(tpm))  -- as admit() charged it
                local corrected = tonumber(tat) + (actual - charged) * 60000 / tonumber(tpm)
                redis.call('SET', key, corrected, 'PX', math.max(1, math.ceil(corrected - now)) + 60000)
              end
            end
            runMs = runMs + now - tonumber(f[8])
            redis.call('HSET', p .. 'job:' .. id, 'state', 'completed', 'finishedAt', now_text)
            event(id, retentions[1], 'type', 'completed')
            table.insert(ended, now_text)
            table.insert(ended, id)
            table.insert(result, 1)
          end
        end
        -- The batch's bookkeeping in one call each, as finish() does per job.
        if #ended > 0 then
          local count = #ended / 2
          redis.call('ZADD', p .. 'completed', unpack(ended))
          redis.call('HINCRBY', p .. 'totals', 'runMs', runMs)
          local total = redis.call('HINCRBY', p .. 'totals', 'completed', count)
          if math.floor(total / 100) ~= math.floor((total - count) / 100) then trim('completed', now, retentions[2], retentions[3]) end
        end
        return result
        """)

    /// ARGV: id lease code reason retryDelayMs(-1 give up) eventRetentionMs retentionMs keep.
    /// Returns the new state, or '' if the lease was lost.
    static let failScript = RedisScript(prelude + """
        local f = owned(ARGV[1], ARGV[2])
        if not f then return '' end
        local now = now_ms()
        leave_active(ARGV[1], f[3])
        local retentions = {ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])}
        if f[10] == '1' then  -- cancelled while it ran: it ends so, not retried
          finish(ARGV[1], 'cancelled', now, retentions, 'type', 'cancelled')
          return 'cancelled'
        end
        local job = p .. 'job:' .. ARGV[1]
        redis.call('HSET', job, 'error', ARGV[4])
        local delay = tonumber(ARGV[5])
        if delay >= 0 and tonumber(f[4]) < tonumber(f[5]) then
          redis.call('HSET', job, 'state', 'delayed')
          redis.call('ZADD', p .. 'delayed', now + delay, ARGV[1])
          redis.call('HINCRBY', p .. 'totals', 'retried', 1)
          wake()
          return 'delayed'
        end
        redis.call('HINCRBY', p .. 'totals', 'failed:' .. ARGV[3], 1)
        finish(ARGV[1], 'failed', now, retentions, 'type', 'error', 'code', ARGV[3], 'message', ARGV[4])
        return 'failed'
        """)

    /// ARGV: id lease eventRetentionMs retentionMs keep. Back to the front of the ready line;
    /// the attempt is not counted. A job whose cancellation was requested ends cancelled instead.
    static let releaseScript = RedisScript(prelude + """
        local f = owned(ARGV[1], ARGV[2])
        if not f then return 0 end
        leave_active(ARGV[1], f[3])
        if f[10] == '1' then
          finish(ARGV[1], 'cancelled', now_ms(), {ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])}, 'type', 'cancelled')
          return 1
        end
        redis.call('HINCRBY', p .. 'job:' .. ARGV[1], 'attempt', -1)
        make_ready(ARGV[1], f[6], f[7], true, now_ms())
        wake_once()
        return 1
        """)

    /// ARGV: id eventRetentionMs retentionMs keep. Returns the state after the call ('' unknown).
    static let cancelScript = RedisScript(prelude + """
        local id = ARGV[1]
        local job = p .. 'job:' .. id
        local f = redis.call('HMGET', job, 'state', 'lane', 'tenant')
        if not f[1] then return '' end
        local now = now_ms()
        local retentions = {ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])}
        if f[1] == 'ready' then
          local list = p .. 'ready:' .. f[2] .. ':' .. f[3]
          if redis.call('LREM', list, 1, id) == 1 then
            redis.call('LPOP', p .. 'backlog')
            if redis.call('LLEN', list) == 0 then redis.call('LREM', p .. 'tenants:' .. f[2], 1, f[3]) end
          end
        elseif f[1] == 'delayed' then
          redis.call('ZREM', p .. 'delayed', id)
        elseif f[1] == 'active' then
          redis.call('HSET', job, 'cancel', 1)
          redis.call('PUBLISH', p .. 'cancel', id)
          return 'active'
        else
          return f[1]
        end
        finish(id, 'cancelled', now, retentions, 'type', 'cancelled')
        return 'cancelled'
        """)

    /// ARGV: id lease eventRetentionMs retentionMs keep. The worker stopped a cancelled job.
    static let finishCancelledScript = RedisScript(prelude + """
        local f = owned(ARGV[1], ARGV[2])
        if not f then return 0 end
        leave_active(ARGV[1], f[3])
        finish(ARGV[1], 'cancelled', now_ms(), {ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])}, 'type', 'cancelled')
        return 1
        """)

    /// No ARGV. Returns {ready, delayed, active, completed, failed, cancelled, oldestReadyAt
    /// (-1 none), now, {totals...}, {live workers...}, {their types...}}.
    static let statsScript = RedisScript(prelude + """
        local now = now_ms()
        local oldest = -1
        for lane = 0, 1 do
          for _, tenant in ipairs(redis.call('LRANGE', p .. 'tenants:' .. lane, 0, 999)) do
            local id = redis.call('LINDEX', p .. 'ready:' .. lane .. ':' .. tenant, 0)
            local at = id and tonumber(redis.call('HGET', p .. 'job:' .. id, 'readyAt'))
            if at and (oldest < 0 or at < oldest) then oldest = at end
          end
        end
        local live = redis.call('ZRANGEBYSCORE', p .. 'workers', now, '+inf')
        local types = {}
        if #live > 0 then types = redis.call('HMGET', p .. 'worker-types', unpack(live)) end
        return {redis.call('LLEN', p .. 'backlog'), redis.call('ZCARD', p .. 'delayed'), redis.call('ZCARD', p .. 'active'),
          redis.call('ZCARD', p .. 'completed'), redis.call('ZCARD', p .. 'failed'), redis.call('ZCARD', p .. 'cancelled'),
          oldest, now, redis.call('HGETALL', p .. 'totals'), live, types}
        """)

    /// ARGV: worker types ttlMs.
    static let heartbeatScript = RedisScript(prelude + """
        local now = now_ms()
        redis.call('ZADD', p .. 'workers', now + tonumber(ARGV[3]), ARGV[1])
        redis.call('HSET', p .. 'worker-types', ARGV[1], ARGV[2])
        for _, gone in ipairs(redis.call('ZRANGEBYSCORE', p .. 'workers', '-inf', now - 3600000)) do
          redis.call('ZREM', p .. 'workers', gone)
          redis.call('HDEL', p .. 'worker-types', gone)
        end
        return 1
        """)
}
