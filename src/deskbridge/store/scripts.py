"""The Lua scripts: each is one atomic round trip.

Jobs are written in arq's own format (``arq:job:<id>`` holding the JSON-serialized job,
``arq:queue`` scored by run time in ms), so storing an event and enqueueing its job is one
atomic step: there is no window in which an acknowledged event has no job. The sweeper
still re-enqueues pending deliveries without a live job (a job can expire, a Redis can
be restored from an older file). The job format is pinned by a test against arq itself.
"""

from __future__ import annotations

__all__ = ["CHANNEL_STATUS", "FINISH", "HOLD", "INTAKE", "PARSE_FAILED", "RELEASE", "REQUEUE"]

# enqueue(queue, job_key, fn, account, id, now_ms, expiry_ms): what arq's enqueue_job
# does, for a job id that must be unique (skipped when the job already exists).
_ENQUEUE = """
local function enqueue(queue, job_key, fn, account, id, now, expiry)
  if redis.call('EXISTS', job_key) == 1 then return 0 end
  local payload = '{"t":null,"f":' .. cjson.encode(fn) .. ',"a":[' .. cjson.encode(account)
    .. ',' .. cjson.encode(id) .. '],"k":{},"et":' .. now .. '}'
  redis.call('SET', job_key, payload, 'PX', expiry)
  redis.call('ZADD', queue, now, id)
  return 1
end
"""

# KEYS: pending, queue, raw, then per event: dedup, event, delivery, lane, job
# ARGV: now_ms, raw_blob, raw_ttl_s, dedup_ttl_s, job_expiry_ms, fn, account, n,
#       direction, channel, desk, then per event: id, event_blob, conversation_id
# The event's first delivery shares its id. Returns one integer per event: 1 stored,
# 0 duplicate.
INTAKE = (
    _ENQUEUE
    + """
local now, expiry, fn, account = ARGV[1], ARGV[5], ARGV[6], ARGV[7]
local n = tonumber(ARGV[8])
local direction, channel, desk = ARGV[9], ARGV[10], ARGV[11]
local out = {}
local any = false
for i = 0, n - 1 do
  local k = 3 + i * 5
  local a = 11 + i * 3
  local id = ARGV[a + 1]
  if redis.call('SET', KEYS[k + 1], id, 'NX', 'EX', ARGV[4]) then
    redis.call('SET', KEYS[k + 2], ARGV[a + 2])
    redis.call('HSET', KEYS[k + 3], 'id', id, 'account', account, 'direction', direction,
      'channel', channel, 'desk', desk, 'conversation_id', ARGV[a + 3], 'event_id', id,
      'state', 'pending', 'attempts', 0, 'created_at', now, 'updated_at', now)
    redis.call('ZADD', KEYS[1], now, id)
    if redis.call('RPUSH', KEYS[k + 4], id) == 1 then
      enqueue(KEYS[2], KEYS[k + 5], fn, account, id, now, expiry)
    end
    out[#out + 1] = 1
    any = true
  else
    out[#out + 1] = 0
  end
end
if any and ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
end
return out
"""
)

# KEYS: dedup, raw, delivery, dead
# ARGV: now_ms, raw_blob, dedup_ttl_s, delivery_json, delivery_id
# Returns 1 stored, 0 duplicate. The raw body is kept without expiry: it is a dead letter.
PARSE_FAILED = """
if not redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
local fields = cjson.decode(ARGV[4])
for k, v in pairs(fields) do redis.call('HSET', KEYS[3], k, tostring(v)) end
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[5])
return 1
"""

# Ends a delivery and hands its lane to the next delivery.
# KEYS: delivery, pending, dead, lane, queue, event. The next head's job key cannot be
#       known in advance, so its prefix comes in ARGV (the queue is not cluster-safe anyway).
# ARGV: now_ms, state, reason, retention_s (0 = keep), job_expiry_ms, fn, account,
#       delivery_id, job_key_prefix, last_error
# A delivery that is no longer pending keeps its state and only leaves the lane.
# Returns the id of the new lane head (its job enqueued) or false.
FINISH = (
    _ENQUEUE
    + """
local now, state, reason, retention = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local id = ARGV[8]
local current = redis.call('HGET', KEYS[1], 'state')
-- only a pending delivery changes state; any other just leaves its lane
if current == 'pending' then
  redis.call('HSET', KEYS[1], 'state', state, 'updated_at', now)
  if reason ~= '' then redis.call('HSET', KEYS[1], 'reason', reason) end
  if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[10]) end
  redis.call('ZREM', KEYS[2], id)
  if state == 'dead' then redis.call('ZADD', KEYS[3], now, id) end
  if retention > 0 then
    redis.call('EXPIRE', KEYS[1], retention)
    redis.call('EXPIRE', KEYS[1] .. ':attempts', retention)
    redis.call('EXPIRE', KEYS[6], retention)
  end
end
redis.call('LREM', KEYS[4], 1, id)
local head = redis.call('LINDEX', KEYS[4], 0)
if head then
  enqueue(KEYS[5], ARGV[9] .. head, ARGV[6], ARGV[7], head, now, ARGV[5])
  return head
end
return false
"""
)

# Re-enqueue a pending delivery whose job is gone (the sweeper), if it heads its lane.
# KEYS: delivery, lane, queue, job ; ARGV: now_ms, job_expiry_ms, fn, account, id
# Returns 1 enqueued, 0 not needed.
REQUEUE = (
    _ENQUEUE
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
if not redis.call('LPOS', KEYS[2], ARGV[5]) then redis.call('RPUSH', KEYS[2], ARGV[5]) end
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[5] then return 0 end
return enqueue(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5], ARGV[1], ARGV[2])
"""
)

# Park a pending delivery until the customer writes again (its lane stays blocked).
# KEYS: delivery, pending ; ARGV: now_ms, delivery_id.  Returns 1 held, 0 not pending.
HOLD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'held', 'updated_at', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# The customer wrote: a held lane head becomes pending again and gets its job.
# KEYS: lane, pending, queue ; ARGV: now_ms, job_expiry_ms, fn, account, delivery key
# prefix, job key prefix.  Returns the released delivery id or false.
RELEASE = (
    _ENQUEUE
    + """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
local dkey = ARGV[5] .. head
if redis.call('HGET', dkey, 'state') ~= 'held' then return false end
redis.call('HSET', dkey, 'state', 'pending', 'updated_at', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[1], head)
enqueue(KEYS[3], ARGV[6] .. head, ARGV[3], ARGV[4], head, ARGV[1], ARGV[2])
return head
"""
)

# Record what the channel says became of a message we sent; statuses arrive out of
# order, so a status only replaces a lower one (sent < delivered < read; failed is final).
# KEYS: delivery ; ARGV: status, at_ms, error.  Returns 1 when it changed the record.
CHANNEL_STATUS = """
local rank = {sent = 1, delivered = 2, read = 3, failed = 4}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = redis.call('HGET', KEYS[1], 'channel_status')
if current and (rank[current] or 0) >= (rank[ARGV[1]] or 0) then return 0 end
redis.call('HSET', KEYS[1], 'channel_status', ARGV[1], 'channel_status_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'channel_error', ARGV[3]) end
return 1
"""
