"""Issue 10's privacy parts: retention (with a fake clock), erasure, export, consent notice."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from deskbridge.adapters.telegram.simulate import sample_update
from deskbridge.errors import PermanentError
from deskbridge.flows import privacy
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX
from deskbridge.outbound.intercom.connector import IntercomConnector
from deskbridge.schemas import Channel, Identity
from deskbridge.store import keys

from .conftest import DEMO_YAML, TG_SECRET, TG_TOKEN, ZENDESK_YAML, drain, redis_of
from .test_admin_api import SECRET, auth, token

TG = f"https://tg.test/bot{TG_TOKEN}"
ZD = "https://acme.zendesk.test/api/v2"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
NOTICE_YAML = (
    DEMO_YAML
    + """    consent_notice:
      telegram: {text: "We keep your messages to answer you.", link: "https://acme.test/privacy"}
    retention: {dead_letters_days: 10, audit_days: 30, delivered_days: 5, raw_events_days: 2}
"""
)


def sent_ok(respx_mock):
    return respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 9, "date": 1, "chat": {"id": 4242}}}
    )


async def post(client, text: str, update_id: int, user: int = 4242):
    body = sample_update(text, update_id=update_id, chat_id=user, user_id=user, first_name="Ana")
    resp = await client.post("/webhooks/telegram/acme", data=body, headers=HEADERS)
    assert resp.status == 200


def _opened(vault, blob: bytes, key: str) -> str:
    """``blob`` decrypted where it is sealed (any of the associated data we use)."""
    for aad in (
        key,
        key + "#thread",
        key + "#context",
        key + "#reply_token",
        key.replace(":vals:", ":node:"),
    ):
        try:
            return vault.open(blob, aad).decode(errors="replace")
        except Exception:  # noqa: S112 - not sealed under this name
            continue
    return blob.decode(errors="replace")


async def dump(redis, vault) -> str:
    """Every key name and every value (opened where sealed) of the database, as text;
    the admin audit log aside."""
    parts = []
    async for k in redis.scan_iter(count=1000):
        name = k.decode(errors="replace")
        parts.append(name)
        t = (await redis.type(k)).decode()
        values: list[bytes] = []
        if t == "string":
            values = [await redis.get(k)]
        elif t == "hash":
            for a, b in (await redis.hgetall(k)).items():
                values += [a, b]
        elif t == "list":
            values = await redis.lrange(k, 0, -1)
        elif t == "set":
            values = list(await redis.smembers(k))
        elif t == "zset":
            values = await redis.zrange(k, 0, -1)
        elif t == "stream" and k != keys.AUDIT.encode():
            for entry_id, fields in await redis.xrange(k):
                values += [entry_id, *fields.values()]
        parts += [_opened(vault, v, name) for v in values]
    return "\n".join(parts)


async def test_consent_notice_once_for_a_new_contact_only(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    rt = make_runtime(NOTICE_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    send = sent_ok(respx_mock)
    await post(client, "hello", 1)
    await drain(rt)
    await post(client, "again", 2)
    await drain(rt)
    notices = [c for c in send.calls if b"acme.test/privacy" in c.request.content]
    assert len(notices) == 1 and send.call_count == 1
    # a contact known before (no notice configured then) gets none later
    await post(client, "another person", 3, user=777)
    await drain(rt)
    assert send.call_count == 2
    rt2 = make_runtime(DEMO_YAML)
    client2 = await aiohttp_client(create_app(rt2, role="serve"))
    await post(client2, "old customer", 4, user=888)
    await drain(rt2)
    await post(client, "old customer again", 5, user=888)
    await drain(rt)
    assert send.call_count == 2  # returning contact: nothing


async def test_retention_ttls_and_sweeper_with_a_fake_clock(
    make_runtime, aiohttp_client, respx_mock, redis
) -> None:
    rt = make_runtime(NOTICE_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    sent_ok(respx_mock)
    await post(client, "hello", 1)
    [raw] = [k async for k in redis.scan_iter(match="db:{acme}:raw:*")]
    # the deferred parse: until the worker parsed it, the raw request is the event's only
    # copy and has no expiry; then it keeps the rest of its retention from its arrival
    assert await redis.ttl(raw) == -1
    await drain(rt)
    assert 2 * 86400 - 60 < await redis.ttl(raw) <= 2 * 86400
    [delivered] = [
        k
        async for k in redis.scan_iter(match="db:{acme}:dlv:*")
        if b"attempts" not in k and await redis.hget(k, "direction") == b"inbound"
    ]
    ttl = await redis.ttl(delivered)
    assert 5 * 86400 - 60 < ttl <= 5 * 86400
    # a dead letter: the sweeper drops it (with its event) after 10 days, not before
    d = await rt.deliveries.get("acme", delivered.decode().rsplit(":", 1)[1])
    assert d is not None
    await redis.persist(delivered)
    await redis.hset(delivered, "state", "dead")
    await redis.zadd(keys.dead("acme"), {d.id: int(time.time() * 1000)})
    await rt.sandbox.record_sent("acme", {"channel": "telegram", "text": "x"})
    now = time.time()
    swept = await privacy.sweep_retention(rt, clock=lambda: now + 9 * 86400)
    assert swept["dead_letters"] == 0 and await redis.exists(delivered)
    assert swept["sandbox_outbox"] == 1  # older than the 5 delivered days
    assert swept["sandbox_tickets"] == 1
    swept = await privacy.sweep_retention(rt, clock=lambda: now + 11 * 86400)
    assert swept["dead_letters"] == 1
    assert not await redis.exists(delivered, keys.event("acme", d.event_id))
    assert await redis.zcard(keys.dead("acme")) == 0
    assert swept["graph_audit"] == 0  # the audit trail keeps 30 days
    swept = await privacy.sweep_retention(rt, clock=lambda: now + 31 * 86400)
    assert swept["graph_audit"] >= 1
    assert await redis.xlen(keys.AUDIT) == 0  # nothing was there; trimming is harmless


async def test_forget_erases_everything_and_is_idempotent(
    make_runtime, aiohttp_client, respx_mock, redis
) -> None:
    rt = make_runtime(NOTICE_YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    sent_ok(respx_mock)
    await post(client, "my secret order 12345", 1)
    await post(client, "second message", 2)
    await drain(rt)
    scope = rt.conversations.scope("acme")
    graph = rt.conversations.graph
    assert graph is not None
    ana = await graph.find(
        scope, Identity(kind="channel_user", value="4242", channel=Channel.TELEGRAM)
    )
    assert ana is not None
    # a second channel and a merge (an alias), a weak suggestion with a stranger
    wa = (
        Identity(
            kind="channel_user", value="16505551234", channel=Channel.WHATSAPP, strength="strong"
        ),
        Identity(kind="phone", value="+16505551234", strength="strong"),
    )
    other, _ = await rt.conversations.observe_contact("acme", wa, "Ana WA")
    await graph.link(
        scope,
        wa[1],
        Identity(kind="channel_user", value="4242", channel=Channel.TELEGRAM),
        actor="op",
        reason="same",
    )
    bob, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="channel_user", value="999", channel=Channel.TELEGRAM, strength="strong"),),
        "Bob",
    )
    # a dead letter of Ana's conversation
    await post(client, "this one fails", 3)
    [conv] = await rt.conversations.conversations_of("acme", ana)
    [late] = await rt.deliveries.lane_ids("acme", rt_direction_inbound(), conv, 10)
    d = await rt.deliveries.get("acme", late)
    assert d is not None
    from deskbridge.schemas import DeliveryState

    await rt.deliveries.finish(d, DeliveryState.DEAD, reason="permanent")
    await rt.sandbox.record_sent("acme", {"channel": "telegram", "chat_id": "4242", "text": "hi"})
    await rt.sandbox.record_sent("acme", {"channel": "telegram", "chat_id": "999", "text": "yo"})
    before = await dump(redis, rt.vault)
    assert "4242" in before and ana in before

    resp = await client.post(
        f"{PREFIX}/contacts/telegram:4242/forget", json={}, headers=auth(token("contacts:write"))
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    survivor = report["contact"]
    removed = report["removed"]
    assert removed["deliveries"] >= 4 and removed["dead_letters"] == 1
    assert removed["conversations"] == 1 and removed["sandbox_tickets"] == 1
    assert removed["identities"] >= 3 and removed["aliases"] == 1
    assert removed["sandbox_outbox"] >= 1
    assert report["aof_rewrite"] in ("started", "scheduled") or "refused" in report["aof_rewrite"]

    after = await dump(redis, rt.vault)
    for needle in ("4242", "16505551234", ana, other.id, survivor, conv, "12345"):
        assert needle not in after, needle
    assert bob.id in after  # the stranger stays
    [entry] = [e for e in await redis.xrange(keys.AUDIT) if e[1][b"action"] == b"contacts.forget"]
    details = json.loads(entry[1][b"details"])
    assert details["contact"] == survivor and "4242" not in entry[1][b"details"].decode()

    again = await client.post(
        f"{PREFIX}/contacts/{survivor}/forget", json={}, headers=auth(token("contacts:write"))
    )
    assert (await again.json())["nothing_left"] is True
    by_ref = await client.post(
        f"{PREFIX}/contacts/telegram:4242/forget", json={}, headers=auth(token("contacts:write"))
    )
    assert (await by_ref.json())["nothing_left"] is True
    bad = await client.post(
        f"{PREFIX}/contacts/nonsense/forget", json={}, headers=auth(token("contacts:write"))
    )
    assert bad.status == 400
    denied = await client.post(
        f"{PREFIX}/contacts/{bob.id}/forget", json={}, headers=auth(token("contacts:read"))
    )
    assert denied.status == 403


def rt_direction_inbound():
    from deskbridge.schemas import Direction

    return Direction.INBOUND


async def test_export_has_everything(make_runtime, aiohttp_client, respx_mock) -> None:
    rt = make_runtime(NOTICE_YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    sent_ok(respx_mock)
    await post(client, "where is order 777?", 1)
    await drain(rt)
    resp = await client.get(
        f"{PREFIX}/contacts/telegram:4242/export", headers=auth(token("contacts:read"))
    )
    assert resp.status == 200
    doc = await resp.json()
    assert doc["format"] == "deskbridge.contact-export/1"
    assert any(i["value"] == "4242" for i in doc["identities"])
    [acc] = doc["accounts"]
    assert acc["contact"]["display_name"] == "Ana" and acc["desk_user_id"]
    [conv] = acc["conversations"]
    texts = [d["event"].get("text") for d in conv["deliveries"] if d["event"]]
    assert "where is order 777?" in texts
    assert any(d["direction"] == "outbound" for d in conv["deliveries"])  # the notice
    assert all("attempt_log" in d for d in conv["deliveries"])
    assert any(d["raw_request"] for d in conv["deliveries"])
    missing = await client.get(
        f"{PREFIX}/contacts/telegram:1/export", headers=auth(token("contacts:read"))
    )
    assert missing.status == 404


async def test_forget_at_zendesk_deletes_tickets_and_user(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    rt = make_runtime(ZENDESK_YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    respx_mock.post(f"{ZD}/users/create_or_update").respond(201, json={"user": {"id": 501}})
    respx_mock.get(f"{ZD}/users/501/identities").respond(
        200, json={"identities": [], "next_page": None}
    )
    respx_mock.post(f"{ZD}/tickets").respond(
        201, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 1}]}}
    )
    await post(client, "hello", 1)
    await drain(rt)
    destroy = respx_mock.delete(f"{ZD}/tickets/destroy_many").respond(200, json={})
    purge = respx_mock.delete(f"{ZD}/deleted_tickets/destroy_many").respond(200, json={})
    user = respx_mock.delete(f"{ZD}/users/501").respond(200, json={"user": {"id": 501}})
    perm = respx_mock.delete(f"{ZD}/deleted_users/501").respond(200, json={})
    gone = {"error": "RecordNotFound", "description": "Not found"}
    respx_mock.get(f"{ZD}/tickets/77").respond(404, json=gone)
    respx_mock.get(f"{ZD}/users/501").respond(200, json={"user": {"id": 501, "active": False}})
    respx_mock.get(f"{ZD}/deleted_users/501").respond(404, json=gone)
    # the desk fails first: nothing local changes, the erasure can be retried
    user.respond(503)
    resp = await client.post(
        f"{PREFIX}/contacts/telegram:4242/forget",
        json={"desk": True},
        headers=auth(token("contacts:write")),
    )
    assert resp.status == 502
    assert await rt.conversations.graph.find(
        "acme", Identity(kind="channel_user", value="4242", channel=Channel.TELEGRAM)
    )
    user.respond(200, json={})
    resp = await client.post(
        f"{PREFIX}/contacts/telegram:4242/forget",
        json={"desk": True},
        headers=auth(token("contacts:write")),
    )
    assert resp.status == 200
    report = await resp.json()
    [desk] = report["desk"]
    assert desk["confirmed"] is True and report["confirmed"] is True
    assert desk["done"] == [
        "tickets deleted (read back: not found): 1",
        "user permanently deleted (read back: not found)",
    ]
    assert destroy.calls.last.request.url.params["ids"] == "77"
    assert purge.called and perm.called


async def _fake_zendesk_contact(rt) -> tuple[str, str]:
    """A contact with a user at the fake Zendesk: (contact id, desk user id)."""
    contact, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="channel_user", value="4242", channel=Channel.TELEGRAM, strength="strong"),),
        "Ana",
    )
    full = await rt.conversations.contact("acme", contact.id)
    user = await rt.desk("acme").ensure_user(full)
    await rt.conversations.set_desk_user("acme", "zendesk", contact.id, f"{user}|fp")
    return contact.id, str(user)


@pytest.mark.parametrize("mode", ["deleted", "wrong_route", "purge_lag"])
async def test_forget_at_the_desk_confirms_only_what_it_read_back(
    make_runtime, aiohttp_server, mode: str
) -> None:
    """A deletion counts only once Zendesk's own not-found comes back: a proxy's HTML 404
    for every call, or a user still visible (the purge job has not run), is reported as
    not confirmed, exits 1 and erases nothing in deskbridge."""
    from .desks.fake_zendesk import FakeZendesk
    from .test_admin_cli import run
    from .test_desk_conformance import yaml_for

    fake = FakeZendesk()
    await fake.start()
    try:
        rt = make_runtime(yaml_for(fake), admin_jwt_secret=SECRET)
        server = await aiohttp_server(create_app(rt, role="serve"))
        url = str(server.make_url("")).rstrip("/")
        contact, user = await _fake_zendesk_contact(rt)
        fake.wrong_route = mode == "wrong_route"
        fake.purge_lag = mode == "purge_lag"
        tok = token("contacts:write")
        result = await run("contacts", "forget", "telegram:4242", "--desk", "--url", url, tok=tok)
        still_known = await rt.conversations.graph.find(
            "acme", Identity(kind="channel_user", value="4242", channel=Channel.TELEGRAM)
        )
        if mode == "deleted":
            assert result.exit_code == 0, result.output
            assert "user permanently deleted (read back: not found)" in result.stdout
            assert fake.users() == [] and still_known is None
            return
        assert result.exit_code == 1, result.output
        assert f"could not confirm yet: user {user} still visible" in result.stderr
        assert "deleted" not in result.stdout
        assert still_known == contact  # kept, so that a later run can read back again
        if mode == "purge_lag":
            # the job ran: the next run confirms
            fake.purge_lag = False
            again = await run(
                "contacts", "forget", "telegram:4242", "--desk", "--json", "--url", url, tok=tok
            )
            assert again.exit_code == 0, again.output
            [desk] = json.loads(again.stdout)["desk"]
            assert desk["confirmed"] is True
    finally:
        await fake.stop()


_IC_GONE = {
    "type": "error.list",
    "request_id": "r1",
    "errors": [{"code": "not_found", "message": "User Not Found"}],
}


@pytest.mark.parametrize(
    ("deleted", "read_back", "confirmed"),
    [
        (200, httpx.Response(404, json=_IC_GONE), True),
        (404, httpx.Response(404, json=_IC_GONE), True),
        (404, httpx.Response(404, html="<h1>404 Not Found</h1>"), False),
        (200, httpx.Response(200, json={"type": "contact", "id": "c1"}), False),
    ],
)
async def test_intercom_forget_user_reads_the_contact_back(
    respx_mock, deleted: int, read_back: httpx.Response, confirmed: bool
) -> None:
    from deskbridge.config import parse_accounts
    from deskbridge.outbound.base import unconfirmed

    cfg = (
        parse_accounts(
            """
accounts:
  acme:
    desk: {type: intercom, access_token: t, client_secret: s, base_url: "https://ic.test"}
"""
        )
        .accounts["acme"]
        .desk
    )
    async with httpx.AsyncClient() as http:
        ic = IntercomConnector("acme", cfg, http)  # type: ignore[arg-type]
        route = respx_mock.delete("https://ic.test/contacts/c1").respond(
            deleted, json={"id": "c1", "deleted": True}
        )
        respx_mock.get("https://ic.test/contacts/c1").mock(return_value=read_back)
        done = await ic.forget_user("c1")
    assert route.called and len(done) == 1
    assert (not unconfirmed(done)) is confirmed
    assert done == ["contact deleted (read back: not found)"] if confirmed else True


async def test_the_erasure_report_counts_what_was_deleted(
    make_runtime, aiohttp_client, respx_mock, redis
) -> None:
    """The report's counts against the keys before and after: 25 messages, 25 raw
    requests deleted, 25 deliveries, and no key left that names a provider id."""
    rt = make_runtime(NOTICE_YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    sent_ok(respx_mock)
    for n in range(1, 26):
        await post(client, f"message {n}", n)
    await drain(rt)

    async def names(kind: str) -> set[bytes]:
        return set(await redis.keys(f"db:{{acme}}:{kind}:*"))

    raws_before, dedup_before = await names("raw"), await names("dedup")
    assert len(raws_before) == 25
    resp = await client.post(
        f"{PREFIX}/contacts/telegram:4242/forget", json={}, headers=auth(token("contacts:write"))
    )
    assert resp.status == 200, await resp.text()
    removed = (await resp.json())["removed"]
    raws_after = await names("raw")
    assert removed["raw_requests"] == len(raws_before - raws_after) == 25
    # the marks stay (a redelivery must not bring the data back), forget their delivery,
    # and are named by digests
    assert await names("dedup") == dedup_before
    erased = [n for n in dedup_before if await redis.get(n) == b"erased"]
    assert removed["dedup_marks"] == len(erased) >= 25
    for name in dedup_before:
        tail = name.decode().rsplit(":", 1)[1]
        assert len(tail) == 32 and all(c in "0123456789abcdef" for c in tail)


async def test_old_id_bearing_key_names_are_renamed_to_digests(make_runtime, redis) -> None:
    from deskbridge.store.digests import IdKeys

    rt = make_runtime()
    wamid = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTg3"
    # how the keys were named before issue 18: by the provider's or desk's own id
    old = keys.dedup("acme", "whatsapp", wamid)
    await redis.set(old, "dlv-1", ex=3600)
    await redis.set(keys.sent("acme", "whatsapp", wamid), "dlv-2", ex=3600)
    await redis.set(keys.ticket("acme", "zendesk", "4711"), "conv-1")
    await redis.zadd(keys.ticket_updates("acme", "zendesk", "4711"), {"a": 1})
    await redis.set(keys.ours("acme", "zendesk", "880011"), 1, ex=3600)
    await redis.sadd(keys.udesk_relayed("acme", "5150"), "r1", "r2")
    # a relayed set already under its digest name (written after the upgrade) is merged
    await redis.sadd(keys.udesk_relayed("acme", rt.vault.digest("ticket", "udesk", "5150")), "r3")
    ids = IdKeys(redis_of(rt), rt.vault)
    every = {"dedup": 1, "sent": 1, "ticket": 1, "tupd": 1, "ours": 1, "relayed": 1}
    assert await ids.digest_names(dry_run=True) == every
    assert await redis.exists(old)
    assert await ids.digest_names() == every
    for ident in (b"wamid", b"4711", b"880011", b"5150"):
        assert not [k for k in await redis.keys("db:*") if ident in k.split(b":")], ident
    assert await rt.listing.dedup_mark("acme", "whatsapp", wamid) == b"dlv-1"
    assert await rt.deliveries.sent_by("acme", "whatsapp", wamid) == "dlv-2"
    assert await rt.conversations.for_ticket("acme", "zendesk", "4711") == "conv-1"
    assert await rt.conversations.is_ours("acme", "zendesk", "880011")
    assert (await rt.deliveries.ticket_updates("acme", "zendesk", "4711", 10**12))[0] == 1
    relayed = keys.udesk_relayed("acme", rt.vault.digest("ticket", "udesk", "5150"))
    assert await redis.smembers(relayed) == {b"r1", b"r2", b"r3"}
    new = keys.dedup("acme", "whatsapp", rt.vault.digest("dedup", "whatsapp", wamid))
    assert 3500 < await redis.ttl(new) <= 3600
    assert await ids.digest_names() == dict.fromkeys(every, 0)


async def test_desk_lookups_written_before_the_upgrade_still_work(make_runtime, redis) -> None:
    """Without `keys digest-ids`, an upgrade loses no agent reply: an old ticket lookup is
    found (and renamed on the way), an old loop-guard mark still guards, and an old
    Udesk relayed set still stops a reply from being taken in twice."""
    from deskbridge.store.udesk import RedisUdeskState

    rt = make_runtime()
    await redis.set(keys.ticket("acme", "zendesk", "4711"), "conv-1")
    await redis.set(keys.ours("acme", "zendesk", "880011"), 1, ex=3600)
    await redis.sadd(keys.udesk_relayed("acme", "5150"), "r1")
    assert await rt.conversations.for_ticket("acme", "zendesk", "4711") == "conv-1"
    assert not await redis.exists(keys.ticket("acme", "zendesk", "4711"))
    assert await rt.conversations.for_ticket("acme", "zendesk", "4711") == "conv-1"
    assert await rt.conversations.for_ticket("acme", "zendesk", "4712") is None
    assert await rt.conversations.is_ours("acme", "zendesk", "880011")
    assert not await rt.conversations.is_ours("acme", "zendesk", "880012")
    state = RedisUdeskState(redis_of(rt), rt.vault)
    assert await state.relayed("acme", "5150") == {"r1"}
    await state.mark_relayed("acme", "5150", ["r2"], ttl=60)
    assert await state.relayed("acme", "5150") == {"r1", "r2"}


async def test_no_desk_id_in_any_key_name(make_runtime, aiohttp_client, respx_mock) -> None:
    """A ticket filed in Zendesk and an agent reply relayed back leave the desk's ticket
    and comment ids in no key name (compared by whole segment)."""
    from .test_coalesce import _with_ticket

    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        await fake.agent_reply(client, rt, ticket_id, "Hello from the desk")
        await drain(rt)
        assert await rt.conversations.for_ticket("acme", "zendesk", ticket_id) is not None
        names = await redis_of(rt).keys("db:*")
        assert [k for k in names if b":ticket:zendesk:" in k]
        assert not [k for k in names if ticket_id.encode() in k.split(b":")]
        comment_ids = {str(c["id"]).encode() for c in fake._comments.get(ticket_id, [])}
        assert comment_ids
        assert not [k for k in names if comment_ids & set(k.split(b":"))]
    finally:
        await fake.stop()


@pytest.mark.parametrize("wrong_route", [False, True])
async def test_udesk_deletions_are_never_confirmed(make_runtime, wrong_route: bool) -> None:
    """Udesk documents no read-back with a not-found shape: even a deletion it accepted
    is reported as not confirmed; a wrong route's HTML 404 fails the erasure outright."""
    from deskbridge.outbound.base import unconfirmed

    from .desks.fake_udesk import FakeUdesk
    from .test_desk_conformance import yaml_for

    fake = FakeUdesk()
    await fake.start()
    try:
        rt = make_runtime(yaml_for(fake))
        contact, _ = await rt.conversations.observe_contact(
            "acme",
            (
                Identity(
                    kind="channel_user", value="4242", channel=Channel.TELEGRAM, strength="strong"
                ),
            ),
            "Ana",
        )
        desk = rt.desk("acme")
        user = await desk.ensure_user(await rt.conversations.contact("acme", contact.id))
        fake.wrong_route = wrong_route
        if wrong_route:
            with pytest.raises(PermanentError, match="HTTP 404"):
                await desk.forget_user(str(user))
            return
        done = await desk.forget_user(str(user))
        assert done and unconfirmed(done) == done
        assert f"customer {user}" in done[-1]
    finally:
        await fake.stop()


@pytest.mark.parametrize("mode", ["deleted", "wrong_route", "delete_lag"])
async def test_intercom_deletion_is_confirmed_by_its_own_not_found(make_runtime, mode: str) -> None:
    from deskbridge.outbound.base import unconfirmed

    from .desks.fake_intercom import FakeIntercom
    from .test_desk_conformance import yaml_for

    fake = FakeIntercom()
    await fake.start()
    try:
        rt = make_runtime(yaml_for(fake))
        contact, _ = await rt.conversations.observe_contact(
            "acme",
            (
                Identity(
                    kind="channel_user", value="4242", channel=Channel.TELEGRAM, strength="strong"
                ),
            ),
            "Ana",
        )
        desk = rt.desk("acme")
        user = await desk.ensure_user(await rt.conversations.contact("acme", contact.id))
        fake.wrong_route = mode == "wrong_route"
        fake.delete_lag = mode == "delete_lag"
        done = await desk.forget_user(str(user))
        if mode == "deleted":
            assert done == ["contact deleted (read back: not found)"]
        else:
            assert unconfirmed(done) == done and f"contact {user} still visible" in done[0]
    finally:
        await fake.stop()
