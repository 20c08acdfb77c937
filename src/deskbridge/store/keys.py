"""Every Redis key deskbridge writes is built here, and nowhere else.

Account keys carry the account in a hash tag (``db:{acme}:...``) so that a cell's store
could move to Redis Cluster for everything but arq's queue, whose names arq fixes.
"""

from __future__ import annotations

import re

from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)

__all__ = [
    "ARQ_ABORTS",
    "ARQ_QUEUE",
    "AUDIT",
    "HEARTBEAT",
    "HOLE",
    "ID_KEY_PATTERNS",
    "ID_KINDS",
    "ROTATION",
    "ROTATION_LOCK",
    "WEBCHAT_NOTIFY",
    "arq_in_progress",
    "arq_job",
    "arq_retry",
    "attempts",
    "awaiting",
    "bot_log",
    "bot_session",
    "consent",
    "console_bulk",
    "console_bulk_ids",
    "console_link",
    "console_session",
    "contact",
    "contact_conversations",
    "contact_ticket",
    "conversation",
    "csat_contact",
    "csat_due",
    "csat_open",
    "csat_ticket",
    "dead",
    "dedup",
    "deliveries",
    "delivery",
    "delivery_prefix",
    "desk_user",
    "desk_write",
    "event",
    "expiring",
    "graph",
    "graph_adjacent",
    "graph_aliases",
    "graph_audit",
    "graph_evidence",
    "graph_members",
    "graph_node",
    "graph_node_for",
    "graph_pending",
    "graph_spellings",
    "graph_suggestions",
    "id_key",
    "identity",
    "ignored",
    "ignoreds",
    "lane",
    "lane_lock",
    "ours",
    "parts",
    "pattern",
    "pending",
    "problems",
    "profile",
    "rate_bucket",
    "raw",
    "raws",
    "revoked_subject",
    "revoked_token",
    "sandbox_idempotency",
    "sandbox_messages",
    "sandbox_outbox",
    "sandbox_seq",
    "sandbox_ticket",
    "sandbox_tickets",
    "sent",
    "sent_by_time",
    "ticket",
    "ticket_updates",
    "token",
    "token_lock",
    "udesk_active",
    "udesk_memo",
    "udesk_poll_lock",
    "udesk_relayed",
    "unparsed",
    "vip_cache",
    "webchat_file",
    "webchat_files",
    "webchat_history",
    "webchat_ids",
    "webchat_rate",
    "webchat_receipts",
    "webchat_seq",
    "webchat_typing",
]

ARQ_QUEUE = default_queue_name
ARQ_ABORTS = abort_jobs_ss
HEARTBEAT = "deskbridge:worker:heartbeat"
ROTATION = "deskbridge:keys:rotation"
"""Hash: the progress of ``deskbridge keys rotate`` (SCAN cursor, counts), for resuming."""
ROTATION_LOCK = "deskbridge:keys:rotation:lock"
WEBCHAT_NOTIFY = "deskbridge:webchat:notify"
"""Pub/sub channel: ``account visitor-digest seq`` when a widget visitor's history grows
(``seq`` 0: a receipt changed or an agent types), so every gateway process (subscribed
once) wakes the sockets it holds for that visitor."""
AUDIT = "deskbridge:audit"
"""The admin API's append-only audit log (a stream; every write; the sweeper trims it by
time, after the longest of the accounts' ``retention.audit_days``)."""


def _a(account: str) -> str:
    return f"db:{{{account}}}"


def arq_job(job_id: str) -> str:
    return job_key_prefix + job_id


def arq_in_progress(job_id: str) -> str:
    """arq's mark of a job a worker has started (its TTL is the job's deadline)."""
    return in_progress_key_prefix + job_id


def arq_retry(job_id: str) -> str:
    """arq's count of a job's tries."""
    return retry_key_prefix + job_id


def dedup(account: str, source: str, digest: str) -> str:
    """Marks an inbound event (``source`` is the channel or desk) as already taken.
    ``digest`` is the vault's keyed digest of the provider's id (``Vault.digest``), never
    the id itself: a WhatsApp message id encodes the customer's number."""
    return f"{_a(account)}:dedup:{source}:{digest}"


def raw(account: str, raw_id: str) -> str:
    return f"{_a(account)}:raw:{raw_id}"


def event(account: str, event_id: str) -> str:
    return f"{_a(account)}:evt:{event_id}"


def delivery(account: str, delivery_id: str) -> str:
    return f"{_a(account)}:dlv:{delivery_id}"


def attempts(account: str, delivery_id: str) -> str:
    return f"{_a(account)}:dlv:{delivery_id}:attempts"


def desk_write(account: str, delivery_id: str) -> str:
    """A desk write of the delivery is (or was) in flight; its value is the attempt count
    when it went out. Outside ``dlv:`` so delivery scans and purges never meet it."""
    return f"{_a(account)}:deskwrite:{delivery_id}"


def parts(account: str, delivery_id: str) -> str:
    """Hash: the parts of a multi-part send the channel accepted (``<n>`` → platform id),
    and ``<n>:unknown`` for a part whose last call had an unknown outcome. Lives and dies
    with the delivery record."""
    return f"{_a(account)}:dlv:{delivery_id}:parts"


def pending(account: str) -> str:
    """Sorted set of pending delivery ids, scored by creation time (ms)."""
    return f"{_a(account)}:pending"


def dead(account: str) -> str:
    """Sorted set of dead-lettered delivery ids, scored by the time they died (ms)."""
    return f"{_a(account)}:dead"


def deliveries(account: str) -> str:
    """Sorted set of every delivery id, scored by creation time (ms): the admin listing."""
    return f"{_a(account)}:dlvz"


def expiring(account: str) -> str:
    """Sorted set of delivery ids whose records expire, scored by when (ms): the sweeper
    drops them from ``deliveries`` once they are gone."""
    return f"{_a(account)}:dlvz:expiring"


def raws(account: str, source: str) -> str:
    """Sorted set of the raw requests kept from ``source``, scored by arrival (ms)."""
    return f"{_a(account)}:rawz:{source}"


def ignored(account: str, item_id: str) -> str:
    """Sealed JSON: one inbound item acknowledged and deliberately not filed (its source,
    reason, provider id, arrival and raw id; never its text). Expires with the raw
    retention."""
    return f"{_a(account)}:ign:{item_id}"


def ignoreds(account: str) -> str:
    """Sorted set of the account's ignored items (``ignored``), scored by arrival (ms)."""
    return f"{_a(account)}:ignz"


def unparsed(account: str, source: str) -> str:
    """Sorted set of the raw requests from ``source`` our parser rejected (``parse_failed``
    dead letters; the member is the dead letter's id and its raw id), scored by arrival."""
    return f"{_a(account)}:rawz:{source}:unparsed"


def ticket_updates(account: str, desk: str, digest: str) -> str:
    """Sorted set of our recent updates to one desk ticket (members and scores: ms), for
    desks that limit updates per ticket (Zendesk: 30 per 10 minutes). ``digest`` is the
    vault's keyed digest of the ticket id (``Vault.digest("ticket", desk, id)``)."""
    return f"{_a(account)}:tupd:{desk}:{digest}"


def awaiting(account: str) -> str:
    """Sorted set of conversations whose customer waits for an agent reply
    (``channel|conversation``, scored by the oldest unanswered message's time)."""
    return f"{_a(account)}:awaiting"


def vip_cache(account: str, digest: str) -> str:
    """A VIP lookup's answer for a contact's identities (``1``/``0``, expiring)."""
    return f"{_a(account)}:vip:{digest}"


def lane(account: str, direction: str, conversation_id: str) -> str:
    """The ordered list of one conversation's deliveries in one direction."""
    return f"{_a(account)}:lane:{direction}:{conversation_id}"


def lane_lock(account: str, direction: str, conversation_id: str) -> str:
    return f"{_a(account)}:lock:{direction}:{conversation_id}"


def conversation(account: str, conversation_id: str) -> str:
    return f"{_a(account)}:conv:{conversation_id}"


def ticket(account: str, desk: str, digest: str) -> str:
    """Desk ticket → our conversation id (how agent replies find their channel), named by
    the vault's keyed digest of the ticket id (``Vault.digest("ticket", desk, id)``)."""
    return f"{_a(account)}:ticket:{desk}:{digest}"


def bot_session(account: str, conversation_id: str) -> str:
    """A conversation's bot session: who answers (bot or people), since and until when."""
    return f"{_a(account)}:bot:{conversation_id}"


def csat_ticket(account: str, desk: str, digest: str) -> str:
    """Marks a solved ticket whose survey was scheduled (once per ticket), named by the
    vault's keyed digest of the ticket id (``Vault.digest("ticket", desk, id)``)."""
    return f"{_a(account)}:csat:ticket:{desk}:{digest}"


def csat_contact(account: str, contact_id: str) -> str:
    """A customer surveyed recently (expires with the account's survey period)."""
    return f"{_a(account)}:csat:contact:{contact_id}"


def csat_due(account: str) -> str:
    """Surveys waiting for their time, by when they are due."""
    return f"{_a(account)}:csat:due"


def csat_open(account: str, conversation_id: str) -> str:
    """A survey sent and not yet answered in a conversation."""
    return f"{_a(account)}:csat:open:{conversation_id}"


def bot_log(account: str, conversation_id: str) -> str:
    """The session's turns, one sealed field per customer message (its delivery id)."""
    return f"{_a(account)}:botlog:{conversation_id}"


def contact(account: str, contact_id: str) -> str:
    return f"{_a(account)}:contact:{contact_id}"


def contact_conversations(account: str, contact_id: str) -> str:
    """Set of the conversations filed under a contact."""
    return f"{_a(account)}:contact:{contact_id}:convs"


def contact_ticket(account: str, desk: str, contact_id: str) -> str:
    """``ticket id|comment count`` of a contact's one ticket (conversation scope contact)."""
    return f"{_a(account)}:contact:{contact_id}:ticket:{desk}"


def identity(account: str, digest: str) -> str:
    """Keyed-HMAC digest of an identity → contact id (no plaintext in key names)."""
    return f"{_a(account)}:ident:{digest}"


def consent(account: str, channel: str, contact_id: str) -> str:
    """Set once the consent notice went to this contact on this channel."""
    return f"{_a(account)}:consent:{channel}:{contact_id}"


def desk_user(account: str, desk: str, contact_id: str) -> str:
    return f"{_a(account)}:deskuser:{desk}:{contact_id}"


def delivery_prefix(account: str) -> str:
    """For scripts that find a delivery by an id they read from a list."""
    return f"{_a(account)}:dlv:"


def sent(account: str, channel: str, digest: str) -> str:
    """A channel's id for a message we sent (as the vault's keyed digest of it, never
    the id) → its delivery (statuses find it here)."""
    return f"{_a(account)}:sent:{channel}:{digest}"


def sent_by_time(account: str, conversation_id: str) -> str:
    """A conversation's sent replies by time (watermark receipts find them here)."""
    return f"{_a(account)}:sentz:{conversation_id}"


def ours(account: str, desk: str, digest: str) -> str:
    """A desk message deskbridge wrote itself (the loop guard), named by the vault's keyed
    digest of the desk's message id (``Vault.digest("ours", desk, id)``)."""
    return f"{_a(account)}:ours:{desk}:{digest}"


def profile(account: str, channel: str, digest: str) -> str:
    """A channel user's display name, cached (the digest hides the user id)."""
    return f"{_a(account)}:profile:{channel}:{digest}"


def problems(account: str) -> str:
    """Hash of what currently fails for an account (a rejected token): /readyz details."""
    return f"{_a(account)}:problems"


def token(name: str) -> str:
    """A platform access token shared by every process (not per account: per channel)."""
    return f"deskbridge:token:{name}"


def revoked_token(jti: str) -> str:
    """An admin token revoked by its ``jti``; kept until the token's ``exp``."""
    return f"deskbridge:revoked:jti:{jti}"


def revoked_subject(subject: str) -> str:
    """Epoch second: the admin tokens of ``subject`` issued at or before it are revoked."""
    return f"deskbridge:revoked:sub:{subject}"


def console_session(digest: str) -> str:
    """A console session (its CSRF token), by a digest of the session id the browser
    holds; expires with the admin token it was opened with."""
    return f"deskbridge:console:session:{digest}"


def console_link(jti: str) -> str:
    """A console sign-in link already used (by its token's ``jti``): links work once."""
    return f"deskbridge:console:link:{jti}"


def console_bulk(job: str) -> str:
    """A console bulk replay or discard running in batches: its owner, filter and
    progress (a hash); expires a day after its last batch."""
    return f"deskbridge:console:bulk:{job}"


def console_bulk_ids(job: str) -> str:
    """The delivery ids a console bulk job has still to do (a list, consumed in batches)."""
    return f"deskbridge:console:bulk:{job}:ids"


def token_lock(name: str) -> str:
    return f"deskbridge:token:{name}:lock"


def sandbox_tickets(account: str) -> str:
    return f"{_a(account)}:sbx:tickets"


def sandbox_ticket(account: str, ticket_id: str) -> str:
    return f"{_a(account)}:sbx:ticket:{ticket_id}"


def sandbox_messages(account: str, ticket_id: str) -> str:
    return f"{_a(account)}:sbx:ticket:{ticket_id}:msgs"


def sandbox_seq(account: str) -> str:
    return f"{_a(account)}:sbx:seq"


def sandbox_idempotency(account: str, key: str) -> str:
    return f"{_a(account)}:sbx:idem:{key}"


def sandbox_outbox(account: str) -> str:
    """What the sandbox channel API was asked to send (newest first)."""
    return f"{_a(account)}:sbx:outbox"


def rate_bucket(account: str, desk: str) -> str:
    """Hash ``tokens``/``ts``: the account's shared token bucket for a desk's API."""
    return f"{_a(account)}:rate:{desk}"


def udesk_active(account: str) -> str:
    """Sorted set of Udesk tickets deskbridge filed on, scored by the last filing (ms)."""
    return f"{_a(account)}:udesk:active"


def udesk_relayed(account: str, digest: str) -> str:
    """Set of a Udesk ticket's reply ids already taken in as agent replies (or skipped),
    named by the vault's keyed digest of the ticket id (``Vault.digest("ticket", "udesk",
    id)``)."""
    return f"{_a(account)}:udesk:relayed:{digest}"


def udesk_memo(account: str, digest: str) -> str:
    """What one filing created in Udesk (a ticket or reply id), by a digest of its key."""
    return f"{_a(account)}:udesk:memo:{digest}"


def udesk_poll_lock(account: str) -> str:
    """Held by the worker whose turn it is to poll the account's tickets."""
    return f"{_a(account)}:udesk:poll"


# -- the identity graph, by merge scope (store/graph.py; its scripts get the prefix) -------


def graph(scope: str) -> str:
    """The prefix of every key of a merge scope's identity graph."""
    return f"db:{{{scope}}}:g"


def graph_node(scope: str, digest: str) -> str:
    """Hash of one identity node: its sealed value ``v`` and contact ``c``."""
    return f"{graph(scope)}:node:{digest}"


def graph_spellings(scope: str, digest: str) -> str:
    """Hash of the sealed spellings one node was seen with."""
    return f"{graph(scope)}:vals:{digest}"


def graph_adjacent(scope: str, digest: str) -> str:
    """Hash of a node's neighbours and how each edge merges."""
    return f"{graph(scope)}:adj:{digest}"


def graph_evidence(scope: str, lo: str, hi: str) -> str:
    """List of what linked two nodes (``lo`` < ``hi``)."""
    return f"{graph(scope)}:ev:{lo}|{hi}"


def graph_members(scope: str, contact_id: str) -> str:
    """Set of a contact's nodes."""
    return f"{graph(scope)}:members:{contact_id}"


def graph_aliases(scope: str) -> str:
    """Hash of merged contact ids → the contact they were merged into."""
    return f"{graph(scope)}:alias"


def graph_suggestions(scope: str) -> str:
    """Hash of suggested merges by contact pair."""
    return f"{graph(scope)}:sugg"


def graph_pending(scope: str) -> str:
    """Sorted set of the suggestions nobody decided yet."""
    return f"{graph(scope)}:sugg:pending"


def graph_audit(scope: str) -> str:
    """Stream of the graph's merges and splits."""
    return f"{graph(scope)}:audit"


def graph_node_for(spellings_key: str) -> str:
    """The node key whose spellings ``spellings_key`` (a ``graph_spellings`` key) holds."""
    found = _SPELLINGS.match(spellings_key)
    if found is None:
        raise ValueError("not a graph spellings key")
    return graph_node(found[1], found[2])


_ID_KEY = re.compile(r"^db:\{([^}]+)\}:(dedup|sent|ticket|tupd|ours):([^:]+):(.+)$")
_RELAYED_KEY = re.compile(r"^db:\{([^}]+)\}:udesk:relayed:(.+)$")
_DIGEST = re.compile(r"^[0-9a-f]{32}$")
ID_KEY_PATTERNS = (
    "db:{*}:dedup:*",
    "db:{*}:sent:*",
    "db:{*}:ticket:*",
    "db:{*}:tupd:*",
    "db:{*}:ours:*",
    "db:{*}:udesk:relayed:*",
)
"""SCAN patterns of the keys that name a provider's or desk's id (as a digest since
issue 18)."""
ID_KINDS = ("dedup", "sent", "ticket", "tupd", "ours", "relayed")


def id_key(key: str) -> tuple[str, str, str, str] | None:
    """A key written before its provider or desk id was digested, split into (kind — one
    of ``ID_KINDS`` —, account, source/channel/desk, the id); None for a key that already
    carries a digest, or another key."""
    found = _ID_KEY.match(key)
    if found is not None:
        kind, account, source, ident = found[2], found[1], found[3], found[4]
    else:
        relayed = _RELAYED_KEY.match(key)
        if relayed is None:
            return None
        kind, account, source, ident = "relayed", relayed[1], "udesk", relayed[2]
    if _DIGEST.match(ident):
        return None
    return kind, account, source, ident


# -- key shapes --------------------------------------------------------------------------

HOLE = "\x1f"
"""Stands for any segment in a key given to ``pattern``."""


def pattern(shape: str) -> re.Pattern[str]:
    """A regex matching the keys of ``shape`` (a key built with ``HOLE`` for segments):
    a hole in braces (the account or scope hash tag) is one group of non-brace
    characters, any other hole one group of non-colon characters."""
    escaped = re.escape(shape)
    hole = re.escape(HOLE)
    tagged = re.escape("{") + hole + re.escape("}")
    return re.compile("^" + escaped.replace(tagged, r"\{([^}]+)\}").replace(hole, "([^:]+)") + "$")


_SPELLINGS = pattern(graph_spellings(HOLE, HOLE))


def webchat_history(account: str, visitor: str) -> str:
    """Sorted set: a widget visitor's conversation, sealed entries scored by sequence
    number; ``visitor`` is the vault's digest of the visitor id."""
    return f"{_a(account)}:webchat:history:{visitor}"


def webchat_seq(account: str, visitor: str) -> str:
    """The visitor's last sequence number."""
    return f"{_a(account)}:webchat:seq:{visitor}"


def webchat_ids(account: str, visitor: str) -> str:
    """Hash: the visitor's client message ids → their sequence numbers (dedup of resends)."""
    return f"{_a(account)}:webchat:ids:{visitor}"


def webchat_file(account: str, visitor: str, file_id: str) -> str:
    """Hash: a file the visitor uploaded, ``meta`` (name, type, size, SHA-256) and
    ``data`` (its bytes), each sealed; ``kept`` once a message names it (it then lives as
    long as the history)."""
    return f"{_a(account)}:webchat:file:{visitor}:{file_id}"


def webchat_files(account: str, visitor: str) -> str:
    """Set: the ids of the visitor's files (what erasure deletes)."""
    return f"{_a(account)}:webchat:files:{visitor}"


def webchat_receipts(account: str, visitor: str) -> str:
    """Hash: the visitor's message ids → ``delivered`` (filed at the desk) or ``read`` (an
    agent read it); a message not in it is only stored."""
    return f"{_a(account)}:webchat:receipts:{visitor}"


def webchat_typing(account: str, visitor: str) -> str:
    """Set, with a few seconds' expiry, while an agent types to the visitor."""
    return f"{_a(account)}:webchat:typing:{visitor}"


def webchat_rate(account: str, scope: str, digest: str, window: int) -> str:
    """A fixed one-minute window's counter of a visitor's or an IP's messages."""
    return f"{_a(account)}:webchat:rate:{scope}:{digest}:{window}"
