"""The identity graph in Redis: who is the same person, with the evidence for it.

Nodes are identifiers (a channel's user id, a phone number, an email address) under a
merge scope, named by keyed digests (no value in any key name); their values are sealed
in the node record. An edge joins the sender's channel identity to each identifier the
channel said belongs to them, and carries its evidence. A **merging** edge is strong
evidence about a *personal* identifier (a mobile number, a personal address) or an
operator's link; every other edge (weak evidence, fixed lines, the account's shared
numbers, a recycled number) is **non-merging** and can only raise a suggestion.

A contact is a connected component over merging edges. Every change runs as one Lua
script, so two first messages from one person arriving at once end as one contact;
merges and splits are appended to an audit stream (ids, digests and reasons, never
values), and a contact id that disappears in a merge stays resolvable (alias map).

Scripts build key names from the scope prefix they are given, which is fine on one
Redis (and every key shares the scope's hash tag); deskbridge does not run on Redis
Cluster (arq does not).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from deskbridge.identity.normalize import (
    email_key,
    is_personal_email,
    is_personal_phone,
    phone_key,
)
from deskbridge.schemas import Identity
from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault
from deskbridge.store.ids import new_id

__all__ = ["Edge", "IdentityGraph", "Observed", "Split", "Suggestion", "node_kind"]

# KEYS: none (built from ARGV[1], the scope prefix "db:{scope}:g")
# ARGV: prefix, now, recycle_seconds, actor, source, n, then n x (digest, sealed value,
#       personal 0/1, kind, mode "m"/"w" of its edge to node 1 ("" for node 1), digest
#       of the exact spelling),
#       then n fresh contact ids
# Returns: {contact of node 1, created 0/1, merges "survivor|loser"..., "|", suggestion
#          pairs...}
OBSERVE = r"""
local p, now, recycle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local actor, source, n = ARGV[4], ARGV[5], tonumber(ARGV[6])
local nodes = {}
for i = 1, n do
  local b = 6 + (i - 1) * 6
  nodes[i] = {d = ARGV[b + 1], v = ARGV[b + 2], personal = ARGV[b + 3], kind = ARGV[b + 4],
              mode = ARGV[b + 5], spelling = ARGV[b + 6]}
end
local fresh = {}
for i = 1, n do fresh[i] = ARGV[6 + n * 6 + i] end

local function node_key(d) return p .. ':node:' .. d end
local function resolve(c)
  local seen = 0
  while c and c ~= '' do
    local nxt = redis.call('HGET', p .. ':alias', c)
    if not nxt or seen > 64 then return c end
    c, seen = nxt, seen + 1
  end
  return c
end

-- 1. nodes: create missing ones, remember which existed, refresh values and last seen
local existed, contact_of, last_seen = {}, {}, {}
for i, nd in ipairs(nodes) do
  local k = node_key(nd.d)
  local rec = redis.call('HMGET', k, 'c', 'seen')
  existed[i] = rec[2] ~= false
  contact_of[i] = resolve(rec[1] or '')
  last_seen[i] = tonumber(rec[2] or '0')
  redis.call('HSET', k, 'v', nd.v, 'p', nd.personal, 'k', nd.kind, 'seen', now)
  -- every spelling of the identifier (both forms of an Argentine mobile, say)
  redis.call('HSET', p .. ':vals:' .. nd.d, nd.spelling, nd.v)
  if not existed[i] then redis.call('HSET', k, 'born', redis.call('INCR', p .. ':seq')) end
end

-- 2. a recycled number: a known personal phone, silent for long, now with a new
--    identity of a channel its contact already has, suggests rather than merges
local suggestions = {}
local function suggest(a, b, reason)
  if a == '' or b == '' or a == b then return end
  if a > b then a, b = b, a end
  local pair = a .. '|' .. b
  if redis.call('HSETNX', p .. ':sugg', pair, cjson.encode({reason = reason, at = now,
      source = source})) == 1 then
    redis.call('ZADD', p .. ':sugg:pending', now, pair)
    redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'suggest',
      'contacts', pair, 'reason', reason)
  end
  table.insert(suggestions, pair)
end
local anchor_kind = nodes[1].kind
for i = 2, n do
  local nd = nodes[i]
  if nd.mode == 'm' and nd.kind == 'phone' and existed[i] and contact_of[i] ~= ''
      and not existed[1] and recycle > 0 and last_seen[i] < now - recycle then
    local members = redis.call('SMEMBERS', p .. ':members:' .. contact_of[i])
    for _, m in ipairs(members) do
      if redis.call('HGET', node_key(m), 'k') == anchor_kind then
        nd.mode = 'w'
        nd.recycled = true
        break
      end
    end
  end
end

-- 3. edges from node 1, with their evidence; a merging edge stays merging
for i = 2, n do
  local nd = nodes[i]
  local a, b = nodes[1].d, nd.d
  local ka, kb = p .. ':adj:' .. a, p .. ':adj:' .. b
  local mode = nd.mode
  if redis.call('HGET', ka, b) == 'm' then mode = 'm' end
  redis.call('HSET', ka, b, mode)
  redis.call('HSET', kb, a, mode)
  nd.mode = mode
  local lo, hi = a, b
  if lo > hi then lo, hi = hi, lo end
  redis.call('RPUSH', p .. ':ev:' .. lo .. '|' .. hi,
    cjson.encode({source = source, at = now, mode = mode, actor = actor}))
end

-- 4. the contacts node 1's merging neighbourhood belongs to
local group = {1}
for i = 2, n do if nodes[i].mode == 'm' then table.insert(group, i) end end
local ids, seen_id = {}, {}
for _, i in ipairs(group) do
  local c = contact_of[i]
  if c ~= '' and not seen_id[c] then seen_id[c] = true; table.insert(ids, c) end
end
table.sort(ids)
local created = 0
local survivor = ids[1]
if not survivor then survivor = fresh[1]; created = 1 end
local merges = {}
for j = 2, #ids do
  local loser = ids[j]
  local members = redis.call('SMEMBERS', p .. ':members:' .. loser)
  for _, m in ipairs(members) do
    redis.call('HSET', node_key(m), 'c', survivor)
    redis.call('SADD', p .. ':members:' .. survivor, m)
  end
  redis.call('DEL', p .. ':members:' .. loser)
  redis.call('HSET', p .. ':alias', loser, survivor)
  local lo, hi = survivor, loser
  if lo > hi then lo, hi = hi, lo end
  if redis.call('HDEL', p .. ':sugg', lo .. '|' .. hi) == 1 then
    redis.call('ZREM', p .. ':sugg:pending', lo .. '|' .. hi)
  end
  redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'merge',
    'contacts', survivor .. '|' .. loser, 'reason', source)
  table.insert(merges, survivor .. '|' .. loser)
end
for _, i in ipairs(group) do
  redis.call('HSET', node_key(nodes[i].d), 'c', survivor)
  redis.call('SADD', p .. ':members:' .. survivor, nodes[i].d)
end
if created == 1 then
  redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'create',
    'contacts', survivor, 'reason', source)
end

-- 5. non-merging edges to someone else's identifiers: suggestions
for i = 2, n do
  local nd = nodes[i]
  if nd.mode == 'w' then
    local reason = 'weak'
    if nd.recycled then reason = 'recycled'
    elseif nd.personal == '0' then reason = 'shared' end
    suggest(survivor, resolve(redis.call('HGET', node_key(nd.d), 'c') or ''), reason)
    -- an identifier no contact owns (a shared line): everyone else who claimed it
    local adj = redis.call('HKEYS', p .. ':adj:' .. nd.d)
    for j = 1, math.min(#adj, 50) do
      suggest(survivor, resolve(redis.call('HGET', node_key(adj[j]), 'c') or ''), reason)
    end
  end
end

local out = {survivor, tostring(created)}
for _, m in ipairs(merges) do table.insert(out, m) end
table.insert(out, '|')
for _, s in ipairs(suggestions) do table.insert(out, s) end
return out
"""

# ARGV: prefix, now, actor, reason, a, b, fresh contact id
# Returns: {"none"} when there was no edge; {"kept", contact} when a and b are still
# connected; {"split", kept contact, new contact} otherwise
UNLINK = r"""
local p, now, actor, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local a, b, fresh = ARGV[5], ARGV[6], ARGV[7]
local ka, kb = p .. ':adj:' .. a, p .. ':adj:' .. b
if redis.call('HEXISTS', ka, b) == 0 then return {'none'} end
redis.call('HDEL', ka, b)
redis.call('HDEL', kb, a)
local lo, hi = a, b
if lo > hi then lo, hi = hi, lo end
redis.call('RPUSH', p .. ':ev:' .. lo .. '|' .. hi,
  cjson.encode({source = 'unlink', at = tonumber(now), mode = 'x', actor = actor}))
local c = redis.call('HGET', p .. ':node:' .. a, 'c') or ''
local cb = redis.call('HGET', p .. ':node:' .. b, 'c') or ''
redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'unlink',
  'contacts', c, 'reason', reason)
if c == '' or c ~= cb then return {'kept', c} end
-- breadth-first over merging edges from a, inside the contact
local reached, queue = {[a] = true}, {a}
local head = 1
while head <= #queue do
  local cur = queue[head]; head = head + 1
  local adj = redis.call('HGETALL', p .. ':adj:' .. cur)
  for j = 1, #adj, 2 do
    local nb, mode = adj[j], adj[j + 1]
    if mode == 'm' and not reached[nb] then
      reached[nb] = true
      table.insert(queue, nb)
    end
  end
end
if reached[b] then return {'kept', c} end
local members = redis.call('SMEMBERS', p .. ':members:' .. c)
-- the side holding the oldest identifier keeps the contact id (desk users and
-- external ids written for it stay right); the other side gets a fresh one
local oldest_in, oldest_out = math.huge, math.huge
for _, m in ipairs(members) do
  local born = tonumber(redis.call('HGET', p .. ':node:' .. m, 'born') or '0')
  if reached[m] then oldest_in = math.min(oldest_in, born)
  else oldest_out = math.min(oldest_out, born) end
end
local move_reached = oldest_out < oldest_in
for _, m in ipairs(members) do
  if (not reached[m]) ~= move_reached then
    redis.call('SREM', p .. ':members:' .. c, m)
    redis.call('SADD', p .. ':members:' .. fresh, m)
    redis.call('HSET', p .. ':node:' .. m, 'c', fresh)
  end
end
redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'split',
  'contacts', c .. '|' .. fresh, 'reason', reason)
return {'split', c, fresh}
"""

# ARGV: prefix, now, actor, reason, a, b, fresh id  -> like OBSERVE's result
LINK = r"""
local p, now, actor, reason = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local a, b, fresh = ARGV[5], ARGV[6], ARGV[7]
local function resolve(c)
  local seen = 0
  while c and c ~= '' do
    local nxt = redis.call('HGET', p .. ':alias', c)
    if not nxt or seen > 64 then return c end
    c, seen = nxt, seen + 1
  end
  return c
end
local ca = resolve(redis.call('HGET', p .. ':node:' .. a, 'c') or '')
local cb = resolve(redis.call('HGET', p .. ':node:' .. b, 'c') or '')
redis.call('HSET', p .. ':adj:' .. a, b, 'm')
redis.call('HSET', p .. ':adj:' .. b, a, 'm')
local lo, hi = a, b
if lo > hi then lo, hi = hi, lo end
redis.call('RPUSH', p .. ':ev:' .. lo .. '|' .. hi,
  cjson.encode({source = 'operator', at = now, mode = 'm', actor = actor, reason = reason}))
local survivor, loser = ca, cb
if survivor == '' then survivor, loser = cb, '' end
if survivor == '' then survivor = fresh end
if loser ~= '' and loser < survivor then survivor, loser = loser, survivor end
local out = {survivor, '0'}
if loser ~= '' and loser ~= survivor then
  for _, m in ipairs(redis.call('SMEMBERS', p .. ':members:' .. loser)) do
    redis.call('HSET', p .. ':node:' .. m, 'c', survivor)
    redis.call('SADD', p .. ':members:' .. survivor, m)
  end
  redis.call('DEL', p .. ':members:' .. loser)
  redis.call('HSET', p .. ':alias', loser, survivor)
  local s1, s2 = survivor, loser
  if s1 > s2 then s1, s2 = s2, s1 end
  if redis.call('HDEL', p .. ':sugg', s1 .. '|' .. s2) == 1 then
    redis.call('ZREM', p .. ':sugg:pending', s1 .. '|' .. s2)
  end
  table.insert(out, survivor .. '|' .. loser)
end
for _, d in ipairs({a, b}) do
  if redis.call('HEXISTS', p .. ':node:' .. d, 'born') == 0 then
    redis.call('HSET', p .. ':node:' .. d, 'born', redis.call('INCR', p .. ':seq'))
  end
  redis.call('HSET', p .. ':node:' .. d, 'c', survivor)
  redis.call('SADD', p .. ':members:' .. survivor, d)
end
redis.call('XADD', p .. ':audit', '*', 'at', now, 'actor', actor, 'action', 'link',
  'contacts', survivor .. '|' .. loser, 'reason', reason)
table.insert(out, '|')
return out
"""


def node_kind(ident: Identity) -> str:
    if ident.kind == "channel_user":
        return f"cu:{ident.channel.value if ident.channel else ''}"
    return ident.kind


@dataclass(frozen=True, slots=True)
class Observed:
    contact_id: str
    created: bool = False
    merges: tuple[tuple[str, str], ...] = ()
    """(survivor, merged) contact ids."""
    suggestions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Split:
    kept: str
    new: str | None = None


@dataclass(frozen=True, slots=True)
class Suggestion:
    contacts: tuple[str, str]
    reason: str
    at: float
    source: str = ""


@dataclass(frozen=True, slots=True)
class Edge:
    a: Identity
    b: Identity
    merging: bool
    evidence: list[dict[str, Any]] = field(default_factory=list)


# Every node of a contact with its sealed spellings, in one round trip: the live id
# (after merges), the contact record when asked for, then per node (sorted by digest) its
# digest, the number of blobs and the blobs (the spellings, or the node's own ``v`` for a
# node written before spellings). ARGV: graph prefix, contact id, the contact records' key
# prefix or '' (only when those keys carry the graph's hash tag). Returns {live id,
# record or '', digest, n, blob..., digest, n, ...}.
_MEMBERS_FN = r"""
local function members_of(p, c, records, asked)
  for _ = 1, 64 do
    local nxt = redis.call('HGET', p .. ':alias', c)
    if not nxt then break end
    c = nxt
  end
  local nodes = redis.call('SMEMBERS', p .. ':members:' .. c)
  table.sort(nodes)
  local out = {c, ''}
  if records ~= '' then out[2] = redis.call('GET', records .. asked) or '' end
  for _, d in ipairs(nodes) do
    local vals = redis.call('HVALS', p .. ':vals:' .. d)
    if #vals == 0 then
      local v = redis.call('HGET', p .. ':node:' .. d, 'v')
      if v then vals = {v} end
    end
    out[#out + 1] = d
    out[#out + 1] = #vals
    for _, v in ipairs(vals) do out[#out + 1] = v end
  end
  return out
end
"""
MEMBERS = _MEMBERS_FN + "return members_of(ARGV[1], ARGV[2], ARGV[3], ARGV[2])\n"

# ``OBSERVE``, then, after a second '|', ``MEMBERS`` of the contact it returns (one round
# trip for a sender's contact and its identifiers). ARGV: OBSERVE's, then the records' key
# prefix or ''.
_OBSERVE_END = "return out\n"
assert OBSERVE.endswith(_OBSERVE_END)
OBSERVE_READ = (
    _MEMBERS_FN
    + OBSERVE[: -len(_OBSERVE_END)]
    + """table.insert(out, '|')
for _, x in ipairs(members_of(p, survivor, ARGV[7 + n * 7], survivor)) do
  table.insert(out, x)
end
return out
"""
)


@guarded
class IdentityGraph:
    """The graph of one deployment; every method takes the merge scope."""

    def __init__(
        self,
        redis: aioredis.Redis,
        vault: Vault,
        *,
        recycle_seconds: float = 180 * 86400,
        clock: Any = time.time,
    ) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self._recycle = recycle_seconds
        self._clock = clock
        self._observe = redis.register_script(OBSERVE)
        self._unlink = redis.register_script(UNLINK)
        self._link = redis.register_script(LINK)
        self._members = redis.register_script(MEMBERS)
        self._observe_read = redis.register_script(OBSERVE_READ)

    @staticmethod
    def prefix(scope: str) -> str:
        return keys.graph(scope)

    # -- identifiers -------------------------------------------------------------------

    @staticmethod
    def key_value(ident: Identity) -> str:
        """The value nodes are keyed by (both spellings of one number share it)."""
        if ident.kind == "phone":
            return phone_key(ident.value)
        if ident.kind == "email":
            return email_key(ident.value) or ident.value.lower()
        return ident.value

    def digest(self, scope: str, ident: Identity, *, claim: bool = False) -> str:
        """The node of ``ident`` (``claim``: the node of an unverified claim of it)."""
        channel = ident.channel.value if ident.channel and ident.kind == "channel_user" else ""
        kind = f"claim:{ident.kind}" if claim else ident.kind
        return self._vault.digest("node", scope, kind, channel, self.key_value(ident))

    @staticmethod
    def personal(ident: Identity, shared: frozenset[str] = frozenset()) -> bool:
        """May this identifier merge contacts on its own?"""
        if ident.kind == "phone":
            return phone_key(ident.value) not in shared and is_personal_phone(ident.value)
        if ident.kind == "email":
            key = email_key(ident.value) or ident.value.lower()
            return key not in shared and is_personal_email(key)
        return True

    def _seal(self, scope: str, digest: str, ident: Identity) -> bytes:
        return self._vault.seal(ident.model_dump_json().encode(), keys.graph_node(scope, digest))

    # -- writes ------------------------------------------------------------------------

    async def observe(
        self,
        scope: str,
        identities: Sequence[Identity],
        *,
        source: str,
        actor: str = "channel",
        shared: frozenset[str] = frozenset(),
    ) -> Observed:
        """Record what one message said about its sender; returns their contact."""
        args = self._observe_args(scope, identities, source=source, actor=actor, shared=shared)
        out = [
            x.decode() if isinstance(x, bytes) else str(x) for x in await self._observe(args=args)
        ]
        return _observed(out)

    async def observe_read(
        self,
        scope: str,
        identities: Sequence[Identity],
        records: str,
        *,
        source: str,
        shared: frozenset[str] = frozenset(),
    ) -> tuple[Observed, bytes | None, list[Identity]]:
        """``observe``, then ``members_with(scope, contact, records)`` of the contact it
        returns, in one round trip. Returns (observed, record blob, identities)."""
        args = self._observe_args(scope, identities, source=source, actor="channel", shared=shared)
        reply = await self._observe_read(args=[*args, records])
        seps = [n for n, x in enumerate(reply) if x == b"|"][:2]
        head = [x.decode() if isinstance(x, bytes) else str(x) for x in reply[: seps[1]]]
        _, blob, members = self._opened(scope, reply[seps[1] + 1 :])
        return _observed(head), blob, members

    def _observe_args(
        self,
        scope: str,
        identities: Sequence[Identity],
        *,
        source: str,
        actor: str,
        shared: frozenset[str],
    ) -> list[Any]:
        if not identities:
            raise ValueError("an observation needs at least one identity")
        anchor = next((i for i in identities if i.kind == "channel_user"), identities[0])
        ordered = [anchor, *(i for i in identities if i is not anchor)]
        claimed: Identity | None = None
        if anchor.strength == "weak":
            # A sender nobody vouched for (an unauthenticated From) writes as a *claim*
            # of the identifier: a node of its own, with a non-merging edge to the
            # identifier itself, so a spoofed address never files into its owner's history.
            claimed = anchor
            ordered = [anchor, *ordered]
        args: list[Any] = [
            self.prefix(scope),
            f"{self._clock():.3f}",
            int(self._recycle),
            actor,
            source,
            len(ordered),
        ]
        seen: set[str] = set()
        rows: list[list[Any]] = []
        for n, ident in enumerate(ordered):
            claim = n == 0 and claimed is not None
            d = self.digest(scope, ident, claim=claim)
            if d in seen:
                continue
            seen.add(d)
            personal = self.personal(ident, shared)
            merging = ident.strength == "strong" and personal
            mode = "" if n == 0 else ("m" if merging else "w")
            kind = f"claim:{node_kind(ident)}" if claim else node_kind(ident)
            spelling = self._vault.digest("spelling", ident.kind, ident.value)
            rows.append([d, self._seal(scope, d, ident), int(personal), kind, mode, spelling])
        args[5] = len(rows)
        for row in rows:
            args.extend(row)
        args.extend(new_id() for _ in rows)
        return args

    async def link(
        self, scope: str, a: Identity, b: Identity, *, actor: str, reason: str
    ) -> Observed:
        """An operator's link: a merging edge, whatever the identifiers are."""
        da, db = self.digest(scope, a), self.digest(scope, b)
        pipe = self._redis.pipeline(transaction=False)
        for d, ident in ((da, a), (db, b)):
            key = keys.graph_node(scope, d)
            pipe.hsetnx(key, "v", self._seal(scope, d, ident))  # type: ignore[arg-type]
            pipe.hsetnx(key, "k", node_kind(ident))
            pipe.hsetnx(key, "p", str(int(self.personal(ident))))
        await pipe.execute()
        out = await self._link(
            args=[self.prefix(scope), f"{self._clock():.3f}", actor, reason, da, db, new_id()]
        )
        return _observed([x.decode() if isinstance(x, bytes) else str(x) for x in out])

    async def unlink(
        self, scope: str, a: Identity, b: Identity, *, actor: str, reason: str
    ) -> Split | None:
        """Remove the edge between ``a`` and ``b``; None when there was none."""
        out = [
            x.decode() if isinstance(x, bytes) else str(x)
            for x in await self._unlink(
                args=[
                    self.prefix(scope),
                    f"{self._clock():.3f}",
                    actor,
                    reason,
                    self.digest(scope, a),
                    self.digest(scope, b),
                    new_id(),
                ]
            )
        ]
        if out[0] == "none":
            return None
        if out[0] == "kept":
            return Split(kept=out[1])
        return Split(kept=out[1], new=out[2])

    async def decide(self, scope: str, pair: tuple[str, str], *, accept: bool, actor: str) -> bool:
        """Close a suggestion: accepting links the two contacts (through one identity of
        each), rejecting drops it. False when there was no such suggestion."""
        lo, hi = sorted(pair)
        field_ = f"{lo}|{hi}"
        if not await self._typed.hexists(keys.graph_suggestions(scope), field_):
            return False
        if accept:
            left, right = await self.members(scope, lo), await self.members(scope, hi)
            if left and right:
                await self.link(scope, left[0], right[0], actor=actor, reason="suggestion")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(keys.graph_suggestions(scope), field_)
        pipe.zrem(keys.graph_pending(scope), field_)
        pipe.xadd(
            keys.graph_audit(scope),
            {
                "at": f"{self._clock():.3f}",
                "actor": actor,
                "action": "accept" if accept else "reject",
                "contacts": field_,
                "reason": "suggestion",
            },
        )
        await pipe.execute()
        return True

    # -- reads -------------------------------------------------------------------------

    async def resolve(self, scope: str, contact_id: str) -> str:
        """The live id of ``contact_id`` (after merges)."""
        for _ in range(64):
            nxt = await self._typed.hget(keys.graph_aliases(scope), contact_id)
            if nxt is None:
                return contact_id
            contact_id = nxt.decode()
        return contact_id

    async def find(self, scope: str, ident: Identity) -> str | None:
        d = self.digest(scope, ident)
        c = await self._typed.hget(keys.graph_node(scope, d), "c")
        if not c:
            return None
        return await self.resolve(scope, c.decode())

    async def claimants(self, scope: str, ident: Identity) -> list[str]:
        """The contacts that wrote as ``ident`` without proof of it (an unauthenticated
        From, a SIP From with no asserted identity): its claim node's owner and the owners
        of its neighbours. None of them owns ``ident`` itself (``find`` is None)."""
        plain = self.digest(scope, ident)
        nodes = [self.digest(scope, ident, claim=True)]
        nodes += [n.decode() for n in await self._typed.hkeys(keys.graph_adjacent(scope, plain))]
        out: list[str] = []
        for d in nodes:
            c = await self._typed.hget(keys.graph_node(scope, d), "c")
            if c and (contact := await self.resolve(scope, c.decode())) not in out:
                out.append(contact)
        return out

    async def members(self, scope: str, contact_id: str) -> list[Identity]:
        """Every identifier of the contact (values opened), channel identities first. One
        round trip (``MEMBERS``)."""
        return (await self.members_with(scope, contact_id, ""))[2]

    async def members_with(
        self, scope: str, contact_id: str, records: str
    ) -> tuple[str, bytes | None, list[Identity]]:
        """``members`` and, in the same round trip, the blob at ``records`` + ``contact_id``
        (a key prefix carrying the scope's hash tag; "" for none). Returns (live id, blob,
        identities)."""
        return self._opened(
            scope, await self._members(args=[self.prefix(scope), contact_id, records])
        )

    def _opened(self, scope: str, reply: list[Any]) -> tuple[str, bytes | None, list[Identity]]:
        """A ``MEMBERS`` reply: (live id, record blob, identities opened)."""
        live = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        blob = reply[1] if isinstance(reply[1], bytes) and reply[1] else None
        out: dict[tuple[str, str | None, str], Identity] = {}
        i = 2
        while i < len(reply):
            d = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
            n = int(reply[i + 1])
            node = keys.graph_node(scope, d)
            for sealed in reply[i + 2 : i + 2 + n]:
                ident = Identity.model_validate_json(self._vault.open(sealed, node))
                key = (ident.kind, ident.channel.value if ident.channel else None, ident.value)
                if key not in out or ident.strength == "strong":
                    out[key] = ident
            i += 2 + n
        ordered = sorted(out.values(), key=lambda i: (i.kind != "channel_user", i.kind, i.value))
        return live, blob, ordered

    async def edges(self, scope: str, contact_id: str) -> list[Edge]:
        contact_id = await self.resolve(scope, contact_id)
        digests = {
            d.decode() for d in await self._typed.smembers(keys.graph_members(scope, contact_id))
        }
        values: dict[str, Identity] = {}
        for d in digests:
            blob = await self._typed.hget(keys.graph_node(scope, d), "v")
            if blob is not None:
                values[d] = Identity.model_validate_json(
                    self._vault.open(blob, keys.graph_node(scope, d))
                )
        out: list[Edge] = []
        for a in sorted(digests):
            for b_raw, mode in (await self._typed.hgetall(keys.graph_adjacent(scope, a))).items():
                b = b_raw.decode()
                if a < b and a in values and b in values:
                    ev = [
                        json.loads(x)
                        for x in await self._typed.lrange(keys.graph_evidence(scope, a, b), 0, -1)
                    ]
                    out.append(Edge(values[a], values[b], mode == b"m", ev))
        return out

    async def suggestions(self, scope: str, limit: int = 100) -> list[Suggestion]:
        pairs = await self._redis.zrange(keys.graph_pending(scope), 0, limit - 1)
        out: list[Suggestion] = []
        for raw in pairs:
            pair = raw.decode()
            info = await self._typed.hget(keys.graph_suggestions(scope), pair)
            if info is None:
                continue
            data = json.loads(info)
            lo, _, hi = pair.partition("|")
            out.append(
                Suggestion((lo, hi), data["reason"], float(data["at"]), data.get("source", ""))
            )
        return out

    async def pending_count(self, scope: str) -> int:
        return int(await self._redis.zcard(keys.graph_pending(scope)))

    async def audit(self, scope: str, limit: int = 100) -> list[dict[str, str]]:
        rows = await self._redis.xrevrange(keys.graph_audit(scope), count=limit)
        return [
            {"id": i.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
            for i, fields in rows
        ]

    async def aliases(self, scope: str, contact_id: str) -> set[str]:
        """The contact ids merged into ``contact_id`` (directly or through others)."""
        rows = await self._typed.hgetall(keys.graph_aliases(scope))
        alias = {k.decode(): v.decode() for k, v in rows.items()}
        out: set[str] = set()
        for start in alias:
            c, seen = start, 0
            while c in alias and seen < 64:
                c, seen = alias[c], seen + 1
            if c == contact_id:
                out.add(start)
        return out

    async def suggestions_of(self, scope: str, ids: set[str]) -> list[Suggestion]:
        """Every suggestion (pending or not yet decided) naming one of ``ids``."""
        rows = await self._typed.hgetall(keys.graph_suggestions(scope))
        out = []
        for raw, info in rows.items():
            lo, _, hi = raw.decode().partition("|")
            if lo in ids or hi in ids:
                data = json.loads(info)
                out.append(
                    Suggestion((lo, hi), data["reason"], float(data["at"]), data.get("source", ""))
                )
        return out

    async def forget(self, scope: str, contact_id: str) -> dict[str, int]:
        """Erase a contact from the graph: its nodes (values, spellings, adjacency both
        ways, evidence), nodes left orphaned by it (an identifier only it claimed), its
        member set, the aliases of contacts merged into it, suggestions naming it and its
        entries in the graph's audit trail. Idempotent; returns what it removed."""
        ids = {contact_id} | await self.aliases(scope, contact_id)
        digests: set[str] = set()
        for cid in ids:
            digests |= {
                d.decode() for d in await self._typed.smembers(keys.graph_members(scope, cid))
            }
        # nodes that still name the contact without being members (a crash mid-merge)
        counts = {"identities": 0, "edges": 0, "aliases": 0, "suggestions": 0, "graph_audit": 0}
        doomed = set(digests)
        pipe = self._redis.pipeline(transaction=False)
        for d in sorted(digests):
            for nb_raw in await self._typed.hkeys(keys.graph_adjacent(scope, d)):
                nb = nb_raw.decode()
                lo, hi = sorted((d, nb))
                pipe.delete(keys.graph_evidence(scope, lo, hi))
                if nb in digests:
                    counts["edges"] += 1 if d < nb else 0
                    continue
                counts["edges"] += 1
                pipe.hdel(keys.graph_adjacent(scope, nb), d)
                rest = {
                    x.decode() for x in await self._typed.hkeys(keys.graph_adjacent(scope, nb))
                } - digests
                owner = await self._typed.hget(keys.graph_node(scope, nb), "c")
                if not rest and (not owner or owner.decode() in ids):
                    doomed.add(nb)  # an identifier nobody else holds: it was theirs only
        for d in doomed:
            pipe.delete(
                keys.graph_node(scope, d),
                keys.graph_spellings(scope, d),
                keys.graph_adjacent(scope, d),
            )
        counts["identities"] = len(doomed)
        for cid in ids:
            pipe.delete(keys.graph_members(scope, cid))
        aliased = [cid for cid in ids if cid != contact_id]
        if aliased:
            pipe.hdel(keys.graph_aliases(scope), *aliased)
        counts["aliases"] = len(aliased)
        for sug in await self.suggestions_of(scope, ids):
            pair = "|".join(sug.contacts)
            pipe.hdel(keys.graph_suggestions(scope), pair)
            pipe.zrem(keys.graph_pending(scope), pair)
            counts["suggestions"] += 1
        async for entry_id, fields in _stream(self._redis, keys.graph_audit(scope)):
            named = fields.get(b"contacts", b"").decode().split("|")
            if ids & set(named):
                pipe.xdel(keys.graph_audit(scope), entry_id)
                counts["graph_audit"] += 1
        await pipe.execute()
        return counts

    async def trim_audit(self, scope: str, min_ms: int) -> int:
        """Drop graph audit entries older than ``min_ms`` (epoch ms). Returns how many."""
        return int(
            await self._redis.xtrim(keys.graph_audit(scope), minid=str(min_ms), approximate=False)
        )

    async def contacts(self, scope: str) -> list[str]:
        """Every live contact id of the scope (for tests and exports; it scans)."""
        out = []
        async for key in self._redis.scan_iter(match=keys.graph_members(scope, "*"), count=500):
            out.append(key.decode().rsplit(":", 1)[1])
        return sorted(out)


async def _stream(
    redis: aioredis.Redis, key: str, batch: int = 1000
) -> AsyncIterator[tuple[bytes, dict[bytes, bytes]]]:
    start = "-"
    while True:
        rows = await redis.xrange(key, min=start, max="+", count=batch)
        for entry_id, fields in rows:
            yield entry_id, fields
        if len(rows) < batch:
            return
        start = "(" + rows[-1][0].decode()


def _observed(out: list[str]) -> Observed:
    contact, created = out[0], out[1] == "1"
    sep = out.index("|", 2)
    merges = tuple(tuple(m.split("|", 1)) for m in out[2:sep])
    suggestions = tuple(tuple(s.split("|", 1)) for s in out[sep + 1 :])
    return Observed(
        contact_id=contact,
        created=created,
        merges=merges,  # type: ignore[arg-type]
        suggestions=suggestions,  # type: ignore[arg-type]
    )
