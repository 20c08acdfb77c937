"""The identity graph against the real Redis: merges only on strong personal evidence,
suggestions otherwise, reversible unlinks, atomic under concurrency."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from deskbridge.identity.normalize import email_key, is_personal_phone, phone_key
from deskbridge.schemas import Channel, Identity
from deskbridge.store import Vault
from deskbridge.store.graph import IdentityGraph

KEY = bytes(range(32))


def ident(kind: str, value: str, strength: str = "strong", channel: str | None = None) -> Identity:
    return Identity(
        kind=kind,
        value=value,
        channel=Channel(channel) if channel else None,
        strength=strength,
        source="test",
    )


def wa(wa_id: str) -> list[Identity]:
    return [ident("channel_user", wa_id, channel="whatsapp"), ident("phone", "+" + wa_id)]


@pytest.fixture
def graph(redis) -> IdentityGraph:
    return IdentityGraph(redis, Vault.from_secret(KEY))


def test_phone_quirks_collapse_and_types() -> None:
    assert phone_key("+5491123456789") == phone_key("+541123456789")
    assert phone_key("+5215512345678") == phone_key("+525512345678")
    assert phone_key("+551187654321") == phone_key("+5511987654321")
    assert is_personal_phone("+447700900123") is False  # a drama number, not assigned
    assert is_personal_phone("+442079460000") is False  # London fixed line
    assert is_personal_phone("+16505551234") is True  # US: fixed line or mobile
    assert email_key("Ana@Bücher.Example") == "ana@xn--bcher-kva.example"


async def test_two_channels_with_one_mobile_are_one_contact(graph) -> None:
    a = await graph.observe("acme", wa("5491123456789"), source="whatsapp")
    sip = [
        ident("channel_user", "sip:+541123456789@carrier.example", channel="sip"),
        ident("phone", "+541123456789"),
    ]
    b = await graph.observe("acme", sip, source="sip")
    assert a.created and not b.created
    assert b.contact_id == a.contact_id
    members = await graph.members("acme", a.contact_id)
    # one node for the number, both spellings kept (the desk user gets both)
    assert {m.value for m in members if m.kind == "phone"} == {"+5491123456789", "+541123456789"}
    assert len([m for m in members if m.kind == "channel_user"]) == 2


async def test_members_with_reads_a_record_and_follows_merges(graph, redis) -> None:
    """``members_with``: the members, the live id after a merge and the record under the
    given prefix, in one round trip."""
    a = await graph.observe("acme", wa("5491123456789"), source="whatsapp")
    b = await graph.observe(
        "acme", [ident("channel_user", "tg-1", channel="telegram")], source="telegram"
    )
    await redis.set("db:{acme}:rec:" + a.contact_id, b"record-a")
    live, blob, members = await graph.members_with("acme", a.contact_id, "db:{acme}:rec:")
    assert live == a.contact_id and blob == b"record-a"
    assert members == await graph.members("acme", a.contact_id)
    assert (await graph.members_with("acme", a.contact_id, ""))[1] is None
    # merged: b's id resolves to the survivor; the record is read under the id asked for
    merged = await graph.link(
        "acme",
        members[0],
        ident("channel_user", "tg-1", channel="telegram"),
        actor="test",
        reason="same person",
    )
    loser = b.contact_id if merged.contact_id == a.contact_id else a.contact_id
    survivor = a.contact_id if loser == b.contact_id else b.contact_id
    live, blob, after = await graph.members_with("acme", loser, "db:{acme}:rec:")
    assert live == survivor
    assert blob == (b"record-a" if loser == a.contact_id else None)
    assert {m.value for m in after} >= {"tg-1", "+5491123456789"}


async def test_observe_read_is_observe_then_members_with(graph, redis) -> None:
    """The worker's one round trip: what ``observe`` records and returns, then the
    contact's record and identifiers as ``members_with`` reads them."""
    first, blob, members = await graph.observe_read(
        "acme", wa("5491123456789"), "db:{acme}:rec:", source="whatsapp"
    )
    assert first.created and blob is None
    assert members == await graph.members("acme", first.contact_id)
    await redis.set("db:{acme}:rec:" + first.contact_id, b"record")
    sip = [
        ident("channel_user", "sip:+541123456789@carrier.example", channel="sip"),
        ident("phone", "+541123456789"),
    ]
    again, blob, members = await graph.observe_read("acme", sip, "db:{acme}:rec:", source="sip")
    assert not again.created and again.contact_id == first.contact_id and blob == b"record"
    assert len([m for m in members if m.kind == "channel_user"]) == 2
    assert members == await graph.members("acme", first.contact_id)
    # suggestions come back as ``observe`` returns them, ahead of the members
    known = await graph.observe("acme", [ident("email", "ana@example.com")], source="email-dmarc")
    claim, _, members = await graph.observe_read(
        "acme",
        [
            ident("channel_user", "700000001", channel="telegram"),
            ident("email", "ana@example.com", strength="weak"),
        ],
        "",
        source="telegram",
    )
    assert claim.suggestions == (tuple(sorted((claim.contact_id, known.contact_id))),)
    assert members == await graph.members("acme", claim.contact_id)


async def test_weak_and_shared_identifiers_only_suggest(graph) -> None:
    known = await graph.observe("acme", [ident("email", "ana@example.com")], source="email-dmarc")
    claim = await graph.observe(
        "acme",
        [
            ident("channel_user", "700000001", channel="telegram"),
            ident("email", "ana@example.com", strength="weak"),
        ],
        source="telegram",
    )
    assert claim.contact_id != known.contact_id
    assert claim.suggestions == (tuple(sorted((claim.contact_id, known.contact_id))),)
    office = await graph.observe(
        "acme",
        [ident("channel_user", "1", channel="telegram"), ident("phone", "+442079460000")],
        source="telegram",
    )
    other = await graph.observe(
        "acme",
        [ident("channel_user", "2", channel="telegram"), ident("phone", "+442079460000")],
        source="telegram",
    )
    assert office.contact_id != other.contact_id and other.suggestions
    [*pending] = await graph.suggestions("acme")
    assert {s.reason for s in pending} == {"weak", "shared"}
    assert await graph.decide("acme", pending[0].contacts, accept=True, actor="op")
    assert await graph.resolve("acme", pending[0].contacts[1]) == pending[0].contacts[0]


async def test_configured_shared_numbers_never_merge(graph) -> None:
    shared = frozenset({"+16505551234"})
    a = await graph.observe(
        "acme",
        [ident("channel_user", "1", channel="telegram"), ident("phone", "+16505551234")],
        source="t",
        shared=shared,
    )
    b = await graph.observe(
        "acme",
        [ident("channel_user", "2", channel="telegram"), ident("phone", "+16505551234")],
        source="t",
        shared=shared,
    )
    assert a.contact_id != b.contact_id


async def test_unlink_splits_only_without_another_strong_path(graph) -> None:
    first = await graph.observe("acme", wa("16505551234"), source="whatsapp")
    tg = [ident("channel_user", "42", channel="telegram"), ident("phone", "+16505551234")]
    await graph.observe("acme", tg, source="telegram")
    email = [ident("channel_user", "42", channel="telegram"), ident("email", "ana@example.com")]
    await graph.observe("acme", email, source="telegram")
    split = await graph.unlink("acme", tg[0], tg[1], actor="op", reason="not the same person")
    assert split is not None and split.new is not None
    # the WhatsApp side holds the oldest identifier: it keeps the contact id
    assert await graph.find("acme", wa("16505551234")[0]) == first.contact_id
    assert await graph.find("acme", tg[0]) == split.new
    assert await graph.find("acme", email[1]) == split.new  # stays with the telegram side
    assert await graph.unlink("acme", tg[0], tg[1], actor="op", reason="again") is None
    audit = [e["action"] for e in await graph.audit("acme")]
    assert "split" in audit and "unlink" in audit


async def test_recycled_number_suggests(graph) -> None:
    now = [1_000_000.0]
    graph._clock = lambda: now[0]
    old = await graph.observe("acme", wa("16505551234"), source="whatsapp")
    now[0] += 400 * 86400
    newcomer = [
        ident("channel_user", "US.13491208655302741918", channel="whatsapp"),
        ident("phone", "+16505551234"),
    ]
    fresh = await graph.observe("acme", newcomer, source="whatsapp")
    assert fresh.contact_id != old.contact_id and fresh.suggestions


async def test_simultaneous_first_messages_end_as_one_contact(graph) -> None:
    phone = "+16505551234"
    obs = [
        [ident("channel_user", f"user{i}", channel=ch), ident("phone", phone)]
        for i, ch in enumerate(["whatsapp", "telegram", "sip", "line"] * 10)
    ]
    results = await asyncio.gather(*(graph.observe("acme", o, source="x") for o in obs))
    ids = {await graph.resolve("acme", r.contact_id) for r in results}
    assert len(ids) == 1
    assert len(await graph.contacts("acme")) == 1


async def test_scopes_never_merge(graph) -> None:
    a = await graph.observe("acme", wa("16505551234"), source="whatsapp")
    b = await graph.observe("globex", wa("16505551234"), source="whatsapp")
    assert a.contact_id != b.contact_id


# -- the stateful property ----------------------------------------------------------------

CHANNEL_IDS = [ident("channel_user", f"u{i}", channel="telegram") for i in range(4)]
ATTRIBUTES = [
    ident("phone", "+16505551234"),  # personal (fixed line or mobile)
    ident("phone", "+16505550000"),
    ident("phone", "+442079460000"),  # a London fixed line: never merges
    ident("email", "ana@example.com"),
    ident("email", "info@example.com"),  # a role mailbox: never merges
]
PERSONAL = {0, 1, 3}


class GraphMachine(RuleBasedStateMachine):
    """The contacts always equal the connected components of the merging edges."""

    def __init__(self) -> None:
        super().__init__()
        import redis.asyncio as aioredis

        from .conftest import TEST_REDIS_URL

        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(TEST_REDIS_URL)
        self.graph = IdentityGraph(self.redis, Vault.from_secret(KEY), recycle_seconds=0)
        self.merging: set[frozenset[str]] = set()
        self.assigned: set[str] = set()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    @initialize()
    def clean(self) -> None:
        self.run(self.redis.flushdb())

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    @staticmethod
    def name(i: Identity) -> str:
        return f"{i.kind}:{i.value}"

    @rule(
        who=st.integers(0, 3),
        attr=st.integers(0, len(ATTRIBUTES) - 1),
        strong=st.booleans(),
    )
    def observe(self, who: int, attr: int, strong: bool) -> None:
        anchor = CHANNEL_IDS[who]
        a = ATTRIBUTES[attr].model_copy(update={"strength": "strong" if strong else "weak"})
        self.run(self.graph.observe("s", [anchor, a], source="t"))
        self.assigned.add(self.name(anchor))
        if strong and attr in PERSONAL:
            self.merging.add(frozenset({self.name(anchor), self.name(a)}))
            self.assigned.add(self.name(a))

    @rule(x=st.integers(0, 3), y=st.integers(0, 3))
    def link(self, x: int, y: int) -> None:
        if x == y:
            return
        a, b = CHANNEL_IDS[x], CHANNEL_IDS[y]
        self.run(self.graph.link("s", a, b, actor="op", reason="test"))
        self.merging.add(frozenset({self.name(a), self.name(b)}))
        self.assigned |= {self.name(a), self.name(b)}

    @rule(who=st.integers(0, 3), attr=st.integers(0, len(ATTRIBUTES) - 1))
    def unlink(self, who: int, attr: int) -> None:
        a, b = CHANNEL_IDS[who], ATTRIBUTES[attr]
        self.run(self.graph.unlink("s", a, b, actor="op", reason="test"))
        self.merging.discard(frozenset({self.name(a), self.name(b)}))

    @invariant()
    def contacts_are_components(self) -> None:
        # the model's components over merging edges
        parent = {n: n for n in self.assigned}

        def root(n: str) -> str:
            while parent[n] != n:
                n = parent[n]
            return n

        for edge in self.merging:
            x, y = tuple(edge)
            parent[root(x)] = root(y)
        expected: dict[str, set[str]] = {}
        for n in self.assigned:
            expected.setdefault(root(n), set()).add(n)
        # the graph's contacts
        got = []
        for cid in self.run(self.graph.contacts("s")):
            members = {self.name(i) for i in self.run(self.graph.members("s", cid))}
            if members:
                got.append(frozenset(members))
        assert sorted(map(sorted, got)) == sorted(map(sorted, expected.values()))


GraphMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGraphMachine = GraphMachine.TestCase
