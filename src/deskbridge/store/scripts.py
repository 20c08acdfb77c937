"""The Lua scripts: each is one atomic round trip.

Jobs are written in arq's own format (``arq:job:<id>`` holding the JSON-serialized job,
``arq:queue`` scored by run time in ms), so storing an event and enqueueing its job is one
atomic step: there is no window in which an acknowledged event has no job. The sweeper
still re-enqueues pending deliveries without a live job (a job can expire, a Redis can
be restored from an older file). The job format is pinned by a test against arq itself.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL_STATUS",
    "CLAIM",
    "COMPLETE",
    "DESK_WRITE",
    "DISCARD",
    "FILING_BUDGET",
    "FINISH",
    "HOLD",
    "IGNORED",
    "INTAKE",
    "INTAKE_DEFERRED",
    "PARSE_FAILED",
    "PURGE",
    "REHOLD",
    "RELEASE",
    "REPLAY",
    "REQUEUE",
    "START_JOB",
    "UNPARSEABLE",
    "WEBCHAT_DELIVERED",
    "WEBCHAT_KEEP_FILES",
    "WEBCHAT_POST",
    "WEBCHAT_READ",
]

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

# KEYS: pending, queue, raw, deliveries index, raw index, then per event: dedup, event,
#       delivery, lane, job
# ARGV: now_ms, raw_blob, raw_ttl_s, dedup_ttl_s, job_expiry_ms, fn, account, n,
#       direction, channel, desk, then per event: id, event_blob, conversation_id, then
#       optionally the deliveries' kind (``note``)
# The event's first delivery shares its id. The raw index's member is the raw id, the last
# segment of the raw key (no extra argument on the ack path); entries past the raw
# retention are trimmed as new ones come. Returns one integer per event: 1 stored,
# 0 duplicate.
INTAKE = (
    _ENQUEUE
    + """
local now, expiry, fn, account = ARGV[1], ARGV[5], ARGV[6], ARGV[7]
local n = tonumber(ARGV[8])
local direction, channel, desk = ARGV[9], ARGV[10], ARGV[11]
-- optional, after the events' arguments: the kind of delivery (``note``)
local kind = ARGV[12 + n * 3]
local out = {}
local any = false
for i = 0, n - 1 do
  local k = 5 + i * 5
  local a = 11 + i * 3
  local id = ARGV[a + 1]
  -- the dedup mark is written last: a write that fails before it must leave no mark
  -- that would take the channel's redelivery for a duplicate (Lua does not roll back)
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then
    redis.call('SET', KEYS[k + 2], ARGV[a + 2])
    redis.call('HSET', KEYS[k + 3], 'id', id, 'account', account, 'direction', direction,
      'channel', channel, 'desk', desk, 'conversation_id', ARGV[a + 3], 'event_id', id,
      'state', 'pending', 'attempts', 0, 'created_at', now, 'updated_at', now)
    if kind and kind ~= '' then redis.call('HSET', KEYS[k + 3], 'kind', kind) end
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('ZADD', KEYS[4], now, id)
    if redis.call('RPUSH', KEYS[k + 4], id) == 1 then
      enqueue(KEYS[2], KEYS[k + 5], fn, account, id, now, expiry)
    end
    redis.call('SET', KEYS[k + 1], id, 'EX', ARGV[4])
    out[#out + 1] = 1
    any = true
  else
    out[#out + 1] = 0
  end
end
if any and ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
  redis.call('ZADD', KEYS[5], now, string.match(KEYS[3], '[^:]+$'))
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (now - ARGV[3] * 1000))
end
return out
"""
)

# The deferred parse (docs/benchmarks.md): one item a receiver's ``peek`` read, stored
# without its event record. The delivery, its event and its raw request share one id
# (the raw key's last segment); the delivery names the raw (``raw_id``) and the item
# (``item``: the dedup mark's digest, its key's last segment), from which the worker
# parses the event and writes its record. The raw request has no expiry until then: it
# is the event's only copy (the worker gives it the rest of its retention).
# KEYS: pending, queue, deliveries index, raw index (these four first: with the
#       arguments at the end they are the same in every call of an account and source,
#       packed once), raw, dedup, delivery, lane, job
# ARGV: now_ms, raw_blob, conversation_id, raw_ttl_s, dedup_ttl_s, job_expiry_ms, fn,
#       account, direction, channel, desk
# Returns 1 stored, 0 duplicate. The dedup mark goes last, as in INTAKE.
INTAKE_DEFERRED = (
    _ENQUEUE
    + """
if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
local now = ARGV[1]
local id = string.match(KEYS[5], '[^:]+$')
redis.call('SET', KEYS[5], ARGV[2])
redis.call('HSET', KEYS[7], 'id', id, 'account', ARGV[8], 'direction', ARGV[9],
  'channel', ARGV[10], 'desk', ARGV[11], 'conversation_id', ARGV[3], 'event_id', id,
  'raw_id', id, 'item', string.match(KEYS[6], '[^:]+$'), 'state', 'pending',
  'attempts', 0, 'created_at', now, 'updated_at', now)
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[3], now, id)
if redis.call('RPUSH', KEYS[8], id) == 1 then
  enqueue(KEYS[2], KEYS[9], ARGV[7], ARGV[8], id, now, ARGV[6])
end
redis.call('ZADD', KEYS[4], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - ARGV[4] * 1000))
redis.call('SET', KEYS[6], id, 'EX', ARGV[5])
return 1
"""
)

# KEYS: dedup, raw, delivery, dead, deliveries index, unparsed index
# ARGV: now_ms, raw_blob, dedup_ttl_s, delivery_json, delivery_id
# Returns 1 stored, 0 duplicate. The raw body is kept without expiry: it is a dead letter.
# The dedup mark goes last, as in INTAKE.
PARSE_FAILED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
local fields = cjson.decode(ARGV[4])
for k, v in pairs(fields) do redis.call('HSET', KEYS[3], k, tostring(v)) end
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[5])
redis.call('ZADD', KEYS[5], ARGV[1], ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[1], ARGV[5])
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[3])
return 1
"""

# Ends a delivery and hands its lane to the next delivery.
# KEYS: delivery, pending, dead, lane, queue, event, expiring. The next head's job key
#       cannot be known in advance, so its prefix comes in ARGV (the queue is not
#       cluster-safe anyway).
# ARGV: now_ms, state, reason, retention_s (0 = keep), job_expiry_ms, fn, account,
#       delivery_id, job_key_prefix, last_error
# A delivery that is no longer pending keeps its state and only leaves the lane.
# Returns the id of the new lane head (its job enqueued) or false.
_FINISH_FN = """
local function finish()
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
      redis.call('EXPIRE', KEYS[1] .. ':parts', retention)
      redis.call('EXPIRE', KEYS[6], retention)
      redis.call('ZADD', KEYS[7], now + retention * 1000, id)
    end
  end
  redis.call('LREM', KEYS[4], 1, id)
  local head = redis.call('LINDEX', KEYS[4], 0)
  if head then
    enqueue(KEYS[5], ARGV[9] .. head, ARGV[6], ARGV[7], head, now, ARGV[5])
    return head
  end
  return false
end
"""

FINISH = _ENQUEUE + _FINISH_FN + "return finish()\n"

# A worker's whole bookkeeping after a successful attempt, in one round trip: FINISH
# preceded by the attempt's record (as ``record_attempt``: its line, the budget count,
# ``updated_at``, no ``last_error``) and followed by the release of the lane lock the worker holds.
# With the arq job that ran it (optional, the last keys and argument), what arq does when
# a job ends (its job, in-progress and retry keys deleted, its id off the queue and the
# abort set), so that arq's own finish is one round trip less (pipeline/worker.py).
# And with an in-progress key prefix and timeout after the job id, the worker goes on
# with the lane here: the next head's job, enqueued by FINISH, is started in this worker
# as arq's own start would (in-progress mark, when it is due and no one else started
# it), and its queue score returned; the worker runs it next in the same task
# (pipeline/worker.py). A worker that dies leaves the mark to expire, and arq runs the
# job again, as for any job it started.
# KEYS: FINISH's seven, then attempts, lane lock, problems[, arq job, in-progress,
#       retry, abort set]
# ARGV: FINISH's ten, then the attempt (JSON), the lock token[, the arq job id[, the
#       in-progress key prefix, the in-progress timeout (ms)]]
# Returns {next head or false, 1 when the account has problems noted else 0, the next
# head's queue score when it was started here else false}.
COMPLETE = (
    _ENQUEUE
    + _FINISH_FN
    + """
redis.call('RPUSH', KEYS[8], ARGV[11])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
-- an earlier attempt's error no longer describes the delivery (its attempt keeps it)
redis.call('HDEL', KEYS[1], 'last_error')
local head = finish()
if redis.call('GET', KEYS[9]) == ARGV[12] then redis.call('DEL', KEYS[9]) end
if ARGV[13] then
  redis.call('DEL', KEYS[11], KEYS[12], KEYS[13])
  redis.call('ZREM', KEYS[5], ARGV[13])
  redis.call('ZREM', KEYS[14], ARGV[13])
end
local started = false
if head and ARGV[14] then
  local mark = ARGV[14] .. head
  local score = redis.call('ZSCORE', KEYS[5], head)
  if score and tonumber(score) <= tonumber(ARGV[1]) and redis.call('EXISTS', mark) == 0 then
    redis.call('PSETEX', mark, ARGV[15], '1')
    started = score
  end
end
return {head, redis.call('EXISTS', KEYS[10]), started}
"""
)

# A deferred event whose raw request the worker's full parse refused: the delivery
# becomes the ``parse_failed`` dead letter the gateway would have made (its raw kept
# without expiry and listed as unparsed, for re-ingest after a fix), leaves its lane
# (the next head's job enqueued) and the lane lock goes. Its item's dedup mark makes
# way for the body's (as the gateway keys a parse failure), so that a re-ingest takes
# the item as new. FINISH preceded by the check and followed by the rest.
# KEYS: FINISH's seven, then raw, raw index, unparsed index, item dedup mark, body
#       dedup mark, lane lock
# ARGV: FINISH's ten (state ``dead``, reason ``parse_failed``, retention 0), then
#       dedup_ttl_s, the lock token
# Returns 1 when it made the dead letter, 0 when the delivery was no longer pending.
UNPARSEABLE = (
    _ENQUEUE
    + _FINISH_FN
    + """
local id = ARGV[8]
local made = redis.call('HGET', KEYS[1], 'state') == 'pending'
finish()
if made then
  redis.call('PERSIST', KEYS[8])
  redis.call('ZREM', KEYS[9], id)
  redis.call('ZADD', KEYS[10], ARGV[1], id)
  redis.call('DEL', KEYS[11])
  redis.call('SET', KEYS[12], id, 'NX', 'EX', ARGV[11])
end
if redis.call('GET', KEYS[13]) == ARGV[12] then redis.call('DEL', KEYS[13]) end
if made then return 1 end
return 0
"""
)

# The start of a worker's attempt, in one round trip: the delivery record and, when it
# is pending and heads its lane, the lane lock (SET NX PX) and, once locked, the event
# record the attempt works on.
# KEYS: delivery. The lane, its lock and the event are named from the record's fields with
# the prefixes in ARGV (every key carries the account's hash tag, so a cluster keeps them
# on the delivery's node).
# ARGV: lane key prefix, lock key prefix (both end before the conversation id), token,
#       lock ttl ms, delivery id, event key prefix (ends before the event id), raw key
#       prefix (ends before the raw id)
# Returns {the record's fields and values (flat), lane head or false, 1 locked / 0 busy,
#          the sealed event record or false (only when locked), the sealed raw request
#          or false (only when locked and the event is not written yet: deferred parse)}.
CLAIM = """
local h = redis.call('HGETALL', KEYS[1])
local state, conv, evt_id, raw_id, item
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'state' then state = h[i + 1] elseif f == 'conversation_id' then conv = h[i + 1]
  elseif f == 'event_id' then evt_id = h[i + 1] elseif f == 'raw_id' then raw_id = h[i + 1]
  elseif f == 'item' then item = h[i + 1] end
end
if state ~= 'pending' or conv == nil then return {h, false, 0} end
local head = redis.call('LINDEX', ARGV[1] .. conv, 0)
if head ~= ARGV[5] then return {h, head, 0} end
if not redis.call('SET', ARGV[2] .. conv, ARGV[3], 'NX', 'PX', ARGV[4]) then return {h, head, 0} end
local evt = false
if evt_id then evt = redis.call('GET', ARGV[6] .. evt_id) end
local raw = false
if not evt and item and raw_id then raw = redis.call('GET', ARGV[7] .. raw_id) end
return {h, head, 1, evt, raw}
"""

# Note a desk write going out: {before, attempts} as ``begin_desk_write`` reads them,
# then the mark set to ``<attempt count>|<ids of the merged deliveries it carries>``
# (a mark written by an earlier version holds the count alone).
# KEYS: desk write mark, attempts, delivery ; ARGV: ttl_s, the carried ids (space-separated)
# Returns 1 when an earlier run left a mark at the same attempt count, or an earlier write
# was recorded as filed (the delivery's ``desk_filed``): in doubt. Else 0.
# mark_desk_write(mark, attempts, carried, ttl_s): the in-flight mark's one format,
# ``<attempt count>|<carried ids>``, for DESK_WRITE and FILING_BUDGET. Returns the count.
_MARK_DESK_WRITE = """
local function mark_desk_write(mark, attempts, carried, ttl)
  local count = redis.call('LLEN', attempts)
  redis.call('SET', mark, count .. '|' .. carried, 'EX', ttl)
  return count
end
"""

DESK_WRITE = (
    _MARK_DESK_WRITE
    + """
local before = redis.call('GET', KEYS[1])
local count = mark_desk_write(KEYS[1], KEYS[2], ARGV[2], ARGV[1])
if redis.call('HEXISTS', KEYS[3], 'desk_filed') == 1 then return 1 end
if before and tonumber(string.match(before, '^%d+')) == count then return 1 end
return 0
"""
)

# A filing's budget read (``DeliveryStore.filing_budget``): the ticket's updates in the
# window (the expired ones dropped), the oldest one's score, the lane's first ids, and an
# earlier desk write's mark and ``desk_filed``; and when no earlier write exists and the
# write will go alone (budget left for it and for each waiting message, and not the
# window's last update), ``DESK_WRITE``'s mark, with no deliveries carried, in the same
# round trip: its answer (not in doubt) is known then.
# KEYS: ticket updates, lane, desk write mark, delivery, attempts
# ARGV: now_ms, window_ms, lane ids to read, updates allowed, delivery id, mark ttl_s
# Returns {used, oldest score or nil, lane ids, mark or nil, desk_filed or nil, marked}.
FILING_BUDGET = (
    _MARK_DESK_WRITE
    + """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[2]))
local used = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local lane = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
local mark = redis.call('GET', KEYS[3])
local filed = redis.call('HGET', KEYS[4], 'desk_filed')
local marked = 0
local left = tonumber(ARGV[4]) - used
if not mark and not filed and left > 1 then
  local waiting = 0
  for _, id in ipairs(lane) do
    if id ~= ARGV[5] then waiting = waiting + 1 end
  end
  if waiting == 0 or left > waiting then
    mark_desk_write(KEYS[3], KEYS[5], '', ARGV[6])
    marked = 1
  end
end
return {used, oldest[2] or false, lane, mark or false, filed or false, marked}
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

# An operator's replay of a dead letter: pending again with a fresh retry budget, back in
# its conversation's lane at its arrival place (lane members sort by id, ids by creation
# time), its job enqueued when it heads the lane. Anything not dead is left alone, so a
# replay is idempotent. Its parts are kept (a replay resumes after the last accepted
# part); its rate-limited wait starts again from zero. A lane head already in flight
# finishes first; FINISH then hands the lane on by value, so the replayed delivery runs
# next.
# KEYS: delivery, pending, dead, lane, queue, job ; ARGV: now_ms, job_expiry_ms, fn,
#       account, delivery_id, who
# Returns 'replayed', the state it was left in, 'parse_failed' or 'missing'.
REPLAY = (
    _ENQUEUE
    + """
local now, id = ARGV[1], ARGV[5]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'dead' then return state end
if redis.call('HGET', KEYS[1], 'reason') == 'parse_failed' then return 'parse_failed' end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'updated_at', now,
  'replayed_at', now, 'replayed_by', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('HDEL', KEYS[1], 'reason', 'rate_limited_ms')
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[2], now, id)
if not redis.call('LPOS', KEYS[4], id) then
  local placed = false
  for _, other in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
    if other > id then
      redis.call('LINSERT', KEYS[4], 'BEFORE', other, id)
      placed = true
      break
    end
  end
  if not placed then redis.call('RPUSH', KEYS[4], id) end
end
if redis.call('LINDEX', KEYS[4], 0) == id then
  enqueue(KEYS[5], KEYS[6], ARGV[3], ARGV[4], id, now, ARGV[2])
end
return 'replayed'
"""
)

# An operator's discard: a dead, held or pending delivery becomes ``discarded`` (who, when,
# why), leaves its lane and hands it to the next delivery. It is kept for the retention
# of delivered records, then expires with its event (and a parse_failed raw body).
# KEYS: delivery, pending, dead, lane, queue, event, expiring, raw, unparsed
# ARGV: now_ms, who, why, retention_s, job_expiry_ms, fn, account, delivery_id,
#       job_key_prefix
# Returns 'discarded', the state it was left in, or 'missing'.
DISCARD = (
    _ENQUEUE
    + """
local now, retention, id = ARGV[1], tonumber(ARGV[4]), ARGV[8]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'dead' and state ~= 'held' and state ~= 'pending' then return state end
redis.call('HSET', KEYS[1], 'state', 'discarded', 'updated_at', now, 'discarded_at', now,
  'discarded_by', ARGV[2], 'discard_reason', ARGV[3])
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[9], id)
if retention > 0 then
  redis.call('EXPIRE', KEYS[1], retention)
  redis.call('EXPIRE', KEYS[1] .. ':attempts', retention)
  redis.call('EXPIRE', KEYS[1] .. ':parts', retention)
  redis.call('EXPIRE', KEYS[6], retention)
  -- a raw request kept without expiry (a parse_failed body, an event not parsed yet)
  -- goes with the record; one with its own retention keeps it
  if redis.call('TTL', KEYS[8]) == -1 then redis.call('EXPIRE', KEYS[8], retention) end
  redis.call('ZADD', KEYS[7], now + retention * 1000, id)
end
if redis.call('LREM', KEYS[4], 1, id) > 0 then
  local head = redis.call('LINDEX', KEYS[4], 0)
  if head then enqueue(KEYS[5], ARGV[9] .. head, ARGV[6], ARGV[7], head, now, ARGV[5]) end
end
return 'discarded'
"""
)

# Delete one delivery and everything kept with it (retention of dead letters, erasure);
# its parts (``<delivery>:parts``) too.
# KEYS: delivery, attempts, event, raw, dead, deliveries index, expiring, unparsed,
#       pending, lane, queue, job
# ARGV: delivery_id, required state ('' = any)
# Returns 1 when the delivery existed (and was removed), 0 otherwise (nothing changes
# when it is not in the required state: a dead letter replayed meanwhile is kept).
PURGE = """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[2] ~= '' and state ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[12])
redis.call('DEL', KEYS[1] .. ':parts')
for i = 5, 9 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZREM', KEYS[11], ARGV[1])
redis.call('LREM', KEYS[10], 0, ARGV[1])
if state then return 1 end
return 0
"""

# A reply the channel accepted and later reported undeliverable because its reply window
# was closed (WhatsApp 131047 in a status webhook) goes back into its lane at its arrival
# place, kept without expiry, its channel status cleared so the statuses of the resend
# count. At the lane's head it is held (until the customer writes); behind another
# delivery it is pending and goes when its turn comes (a held delivery it went in front
# of becomes pending behind it): a lane is only ever blocked by its head.
# KEYS: delivery, lane, event, expiring, pending ; ARGV: now_ms, delivery_id, delivery
#       key prefix
# Returns 'held', 'pending', or false when it was not a delivered reply.
REHOLD = """
local now, id = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[1], 'state') ~= 'delivered' then return false end
redis.call('HDEL', KEYS[1], 'reason', 'channel_status', 'channel_status_at', 'channel_error')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[1] .. ':attempts')
-- the channel did not deliver it: every part goes again when it is released
redis.call('DEL', KEYS[1] .. ':parts')
redis.call('PERSIST', KEYS[3])
redis.call('ZREM', KEYS[4], id)
if not redis.call('LPOS', KEYS[2], id) then
  local placed = false
  for _, other in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if other > id then
      redis.call('LINSERT', KEYS[2], 'BEFORE', other, id)
      placed = true
      break
    end
  end
  if not placed then redis.call('RPUSH', KEYS[2], id) end
end
if redis.call('LINDEX', KEYS[2], 0) ~= id then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'updated_at', now)
  redis.call('ZADD', KEYS[5], now, id)
  return 'pending'
end
redis.call('HSET', KEYS[1], 'state', 'held', 'updated_at', now)
local second = redis.call('LINDEX', KEYS[2], 1)
if second and redis.call('HGET', ARGV[3] .. second, 'state') == 'held' then
  redis.call('HSET', ARGV[3] .. second, 'state', 'pending', 'updated_at', now)
  redis.call('ZADD', KEYS[5], now, second)
end
return 'held'
"""


# Items acknowledged and deliberately not filed (``events list --ignored``).
# KEYS: ignored index, raw (or ""-free placeholder), raw index, then per item: its record
# ARGV: now_ms, ttl_s, raw_blob ('' = no raw kept), then per item: id, sealed record
# The raw request is kept (for re-ingest after a fix) unless the intake script already
# kept it under the same id. Entries past the retention are trimmed as new ones come.
IGNORED = """
local now, ttl = tonumber(ARGV[1]), ARGV[2]
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
  redis.call('ZADD', KEYS[3], now, string.match(KEYS[2], '[^:]+$'))
end
for i = 4, #KEYS do
  local a = 4 + (i - 4) * 2
  redis.call('SET', KEYS[i], ARGV[a + 1], 'EX', ttl)
  redis.call('ZADD', KEYS[1], now, ARGV[a])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl * 1000))
return #KEYS - 3
"""


# read(receipts, ttl): every message of the visitor that is at the desk (``delivered``)
# is now ``read``; returns how many changed.
_WEBCHAT_READ_ALL = """
local function read_all(receipts, ttl)
  local flat = redis.call('HGETALL', receipts)
  local changed = 0
  for i = 1, #flat, 2 do
    if flat[i + 1] == 'delivered' then
      redis.call('HSET', receipts, flat[i], 'read')
      changed = changed + 1
    end
  end
  if changed > 0 then redis.call('EXPIRE', receipts, ttl) end
  return changed
end
"""

# KEYS: seq, history, ids, receipts, typing, file index. ARGV: client id ('' for none),
# sealed entry, ttl s, history cap, pub/sub channel, notification prefix, '1' when an
# agent wrote it, the visitor's file key prefix. A client id already seen returns its
# sequence number and writes nothing (a resend after a reconnect); else the entry gets
# the next number, is kept and announced. An agent's reply says they read what was filed
# before it and stopped typing. The history's expiry renewed, so is every file a message
# named (``kept``, WEBCHAT_KEEP_FILES): no entry outlives its files. An id whose file is
# gone leaves the index, which lasts at least as long as the files it names (erasure
# reads it). Returns {seq, 1 if new}.
WEBCHAT_POST = (
    _WEBCHAT_READ_ALL
    + """
if ARGV[1] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[1])
  if seen then return {tonumber(seen), 0} end
end
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[4]))
if ARGV[1] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], seq) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local file = ARGV[8] .. id
  if redis.call('HEXISTS', file, 'kept') == 1 then
    redis.call('EXPIRE', file, ARGV[3])
  elseif redis.call('EXISTS', file) == 0 then
    redis.call('SREM', KEYS[6], id)
  end
end
local left = redis.call('TTL', KEYS[6])
if left >= 0 and left < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[6], ARGV[3]) end
if ARGV[7] == '1' then
  read_all(KEYS[4], ARGV[3])
  redis.call('DEL', KEYS[5])
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. seq)
return {seq, 1}
"""
)

# KEYS: the visitor's files a message names. ARGV: ttl s. All of them still kept: each is
# marked ``kept`` (WEBCHAT_POST renews it with the history) and expires in ttl s;
# returns 1. One gone: nothing changes; returns 0.
WEBCHAT_KEEP_FILES = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return 0 end
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'kept', '1')
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
"""

# KEYS: receipts. ARGV: ttl s, pub/sub channel, notification prefix, then the ids of
# messages filed at the desk. A message already delivered or read keeps its state; a
# change is announced (sequence number 0). Returns how many changed.
WEBCHAT_DELIVERED = """
local changed = 0
for i = 4, #ARGV do
  if not redis.call('HGET', KEYS[1], ARGV[i]) then
    redis.call('HSET', KEYS[1], ARGV[i], 'delivered')
    changed = changed + 1
  end
end
if changed > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' 0')
end
return changed
"""

# KEYS: receipts. ARGV: ttl s, pub/sub channel, notification prefix. An agent read the
# conversation: what is at the desk is read (announced when anything changed). Returns
# how many changed.
WEBCHAT_READ = (
    _WEBCHAT_READ_ALL
    + """
local changed = read_all(KEYS[1], ARGV[1])
if changed > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' 0') end
return changed
"""
)


# KEYS: in-progress key, queue. ARGV: job id, now (ms), in-progress TTL (ms).
# arq's check before it runs a job (not started elsewhere, still queued, due), and its
# in-progress mark, in one step: arq does it with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/
# EXEC, four round trips per job. Returns the job's score, or false when it must not run.
START_JOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""
