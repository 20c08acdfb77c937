"""The website chat widget: identity, frames, the socket end to end over a real Redis
(send, acknowledgement, dedup of resends, the agent's reply live, history on return,
a reply through another gateway process, a history entry that does not open skipped),
origin and rate limits, verified identity joining the email contact, the script's
integrity hash in the docs, and ``simulate``."""

from __future__ import annotations

import inspect
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from deskbridge.adapters.spec import SimulateInput
from deskbridge.adapters.webchat import SPEC, anonymous, message, user_hash, verified
from deskbridge.adapters.webchat.identity import (
    Visitor,
    check_file_link,
    check_token,
    check_upload_token,
)
from deskbridge.config import WebchatConfig, parse_accounts
from deskbridge.errors import ConfigError, PayloadInvalid, SignatureInvalid
from deskbridge.gateway import create_app
from deskbridge.gateway.webchat import SCRIPT_PATH, integrity
from deskbridge.schemas import AgentReply, Channel, ChannelAddress, Desk, Identity
from deskbridge.store import Vault, keys
from deskbridge.store.webchat import history_aad

from .conftest import drain

SECRET = "webchat-visitor-secret-0123456789"
IDENTITY = "webchat-identity-secret-0123456789"
ORIGIN = "https://shop.example.com"
DOCS = Path(__file__).parent.parent / "docs" / "channels" / "webchat.md"


def yaml(**extra: object) -> str:
    more = "".join(f"\n        {k}: {v}" for k, v in extra.items())
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: webchat
        secret: "{SECRET}"
        identity_secret: "{IDENTITY}"
        allowed_origins: ["{ORIGIN}"]{more}
"""


# --- identity and frames ----------------------------------------------------------------


def test_an_anonymous_token_round_trips_and_a_forged_one_is_refused() -> None:
    visitor, token = anonymous(SECRET, None)
    assert visitor.id.startswith("v_") and not visitor.verified
    assert anonymous(SECRET, token)[0] == visitor
    vid, _, sig = token.partition(".")
    for forged in (f"{vid}.{'0' * 64}", f"v_{'A' * 22}.{sig}", "nonsense", ""):
        with pytest.raises(SignatureInvalid):
            check_token(SECRET, forged)
    with pytest.raises(SignatureInvalid):
        anonymous("another-secret-0123456789", token)


def test_a_verified_visitor_needs_the_sites_hmac() -> None:
    good = user_hash(IDENTITY, "carol@example.com")
    v = verified(IDENTITY, user_hash_given=good, user_id=None, email="carol@example.com", name="C")
    assert v.id == "u:carol@example.com" and v.verified
    with pytest.raises(SignatureInvalid):
        verified(IDENTITY, user_hash_given=good, user_id="42", email="carol@example.com", name=None)
    with pytest.raises(SignatureInvalid):
        verified(IDENTITY, user_hash_given=good, user_id=None, email=None, name=None)


def test_frames_parse_into_messages_and_bad_ones_name_the_problem() -> None:
    now = datetime.now(UTC)
    v = Visitor(
        "u:42",
        verified=True,
        user_id="42",
        email="Carol@Example.com",
        name="C",
        email_verified=True,
        language="es",
    )
    m = message(
        "acme", v, {"type": "message", "id": "abcdef123", "text": "Hi"}, now=now, max_chars=10
    )
    assert (m.channel, m.thread, m.dedup_key, m.text) == (
        Channel.WEBCHAT,
        "u:42",
        "u:42:abcdef123",
        "Hi",
    )
    assert (
        Identity(
            kind="email", value="carol@example.com", strength="strong", source="webchat_verified"
        )
        in m.sender.identities
    )
    assert m.sender.language == "es"
    anon = Visitor("v_" + "a" * 22)
    off = message(
        "acme",
        anon,
        {"type": "offline", "id": "abcdef123", "text": "Call me", "email": "Bo@Example.com"},
        now=now,
        max_chars=10,
    )
    assert off.context == {"email": "bo@example.com"} and off.note
    assert [i.strength for i in off.sender.identities if i.kind == "email"] == ["weak"]
    for frame, why in [
        ({"type": "message", "id": "short", "text": "x"}, "id"),
        ({"type": "message", "id": "abcdef123", "text": "  "}, "no text"),
        ({"type": "message", "id": "abcdef123", "text": "x" * 11}, "longer"),
        ({"type": "offline", "id": "abcdef123", "text": "x", "email": "nope"}, "email"),
    ]:
        with pytest.raises(PayloadInvalid, match=why):
            message("acme", anon, frame, now=now, max_chars=10)


def test_the_config_needs_an_origin_allow_list_of_sites() -> None:
    for bad in ("allowed_origins: []", 'allowed_origins: ["https://shop.example.com/path"]'):
        with pytest.raises(ConfigError) as caught:
            parse_accounts(yaml().replace(f'allowed_origins: ["{ORIGIN}"]', bad))
        assert [w for w, _ in caught.value.problems if "allowed_origins" in w]


# --- the socket -------------------------------------------------------------------------


async def _hello(ws: Any, **frame: Any) -> dict[str, Any]:
    await ws.send_json({"type": "hello", **frame})
    welcome: dict[str, Any] = await ws.receive_json(timeout=5)
    return welcome


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=5)
        if frame["type"] == kind:
            return frame


def _reply(ticket_id: str, text: str, n: int) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key=f"r{n}",
        ticket_id=ticket_id,
        external_id=f"a{n}",
        text=text,
        author_name="Ana",
        occurred_at=datetime.now(UTC),
    )


async def test_send_ack_dedup_reply_live_and_history_on_return(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    from deskbridge.flows.ingest import accept_replies

    rt = make_runtime(yaml())
    client = await aiohttp_client(create_app(rt, role="serve"))
    refused = await client.get("/widget/v1/acme/socket", headers={"Origin": "https://evil.test"})
    assert refused.status == 403
    assert (await client.get("/widget/v1/nobody/socket", headers={"Origin": ORIGIN})).status == 404

    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    welcome = await _hello(ws, visitor=None, after=0)
    assert welcome["languages"] == ["en"]
    assert welcome["online"] is True and welcome["verified"] is False
    token = welcome["visitor"]
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "Where is my order?"})
    ack = await _until(ws, "ack")
    assert ack == {"type": "ack", "id": "client-msg-1", "seq": 1}
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "Where is my order?"})
    assert (await _until(ws, "ack"))["seq"] == 1  # a resend: acknowledged, kept once
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "webchat"
    assert [m.text for m in ticket.messages if "order" in m.text] != []
    assert len([m for m in ticket.messages if "Where is my order?" in m.text]) == 1

    # the agent's reply arrives on the open socket
    await accept_replies(rt, "acme", "sandbox", None, [_reply(ticket.id, "It ships today.", 1)])
    await drain(rt)
    live = await _until(ws, "message")
    while live["role"] != "agent":
        live = await _until(ws, "message")
    assert (live["seq"], live["text"], live["author"]) == (2, "It ships today.", "Ana")
    await ws.close()

    # a reply while the visitor is away waits in the conversation
    await accept_replies(rt, "acme", "sandbox", None, [_reply(ticket.id, "Tracking: 42.", 2)])
    await drain(rt)

    # the visitor returns: the whole conversation, in order; or only what is new
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    assert (await _hello(ws, visitor=token, after=0))["visitor"] == token
    got = [await _until(ws, "message") for _ in range(3)]
    assert [(f["seq"], f["role"], f["text"]) for f in got] == [
        (1, "visitor", "Where is my order?"),
        (2, "agent", "It ships today."),
        (3, "agent", "Tracking: 42."),
    ]
    await ws.close()
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    await _hello(ws, visitor=token, after=2)
    assert (await _until(ws, "message"))["seq"] == 3
    await ws.close()

    # a forged token is refused
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    # a forged signature: the last hex digit changed (to another digit, whatever it was)
    forged = token[:-1] + ("1" if token.endswith("0") else "0")
    assert await _hello(ws, visitor=forged, after=0) == {
        "type": "error",
        "code": "identity",
    }
    await ws.close()


async def test_a_reply_reaches_the_visitor_through_another_gateway_process(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    # gateway A holds the socket; the reply is sent by B's runtime (another process)
    a = make_runtime(yaml())
    b = make_runtime(yaml())
    client = await aiohttp_client(create_app(a, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    token = (await _hello(ws, visitor=None, after=0))["visitor"]
    visitor = token.partition(".")[0]
    adapter = b.adapter("acme", Channel.WEBCHAT)
    assert adapter is not None
    to = ChannelAddress(channel=Channel.WEBCHAT, account="acme", thread=visitor)
    receipt = await adapter.send(_reply("t1", "Hello from B", 1), to, [])
    assert receipt.external_ids == (f"{visitor}#1",)
    again = await adapter.send(_reply("t1", "Hello from B", 1), to, [])
    assert again.external_ids == receipt.external_ids  # a retried send is kept once
    frame = await _until(ws, "message")
    assert (frame["seq"], frame["text"]) == (1, "Hello from B")
    await ws.close()


async def test_an_unreadable_history_entry_is_skipped_and_the_rest_still_flows(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis, caplog: Any
) -> None:
    rt = make_runtime(yaml())
    client = await aiohttp_client(create_app(rt, role="serve"))
    found, token = anonymous(SECRET, None)
    visitor = found.id
    for n in range(1, 5):
        body = {"role": "agent", "text": f"Line {n}", "at": "2024-05-01T10:00:00+00:00"}
        await rt.webchat.post("acme", visitor, body, client_id="", ttl_s=3600)
    # entry 2 sealed with a key this deployment no longer holds, entry 4 damaged
    v = rt.webchat.visitor_key("acme", visitor)
    history = keys.webchat_history("acme", v)
    retired = Vault.from_secret(b"r" * 32)
    [(fourth, _)] = await redis.zrangebyscore(history, 4, 4, withscores=True)
    bad = {
        2: retired.seal(b'{"role":"agent","text":"Line 2"}', history_aad("acme", v)),
        4: fourth[:-1] + bytes([fourth[-1] ^ 1]),
    }
    for seq, blob in bad.items():
        await redis.zremrangebyscore(history, seq, seq)
        await redis.zadd(history, {blob: seq})

    view = await rt.webchat.view("acme", visitor)
    assert [e.body["text"] for e in view.entries] == ["Line 1", "Line 3"]
    assert view.unreadable == {
        2: f"record sealed with unknown key id {retired.active_id}",
        4: "record does not authenticate",
    }
    assert view.last == 4 and not view.full

    with caplog.at_level(logging.WARNING, logger="deskbridge.gateway.webchat"):
        ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
        await _hello(ws, visitor=token, after=0)
        got = [await _until(ws, "message") for _ in range(2)]
        assert [(f["seq"], f["text"]) for f in got] == [(1, "Line 1"), (3, "Line 3")]
        # the socket still serves: a live message arrives, the bad entries are not read again
        body = {"role": "agent", "text": "Line 5"}
        await rt.webchat.post("acme", visitor, body, client_id="", ttl_s=3600)
        assert (await _until(ws, "message"))["seq"] == 5
        await ws.close()
    skipped = rt.metrics.registry.get_sample_value(
        "deskbridge_events_total",
        {"source": "webchat", "outcome": "skipped", "reason": "history_unreadable"},
    )
    assert skipped == 2
    [said] = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "2 history entries" in said and "numbers 2 to 4" in said
    assert "Line" not in said and visitor not in said and v not in said


async def test_rate_limits_refuse_without_acknowledging(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(yaml(messages_per_minute=2))
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    await _hello(ws, visitor=None, after=0)
    if int(time.time()) % 60 > 57:  # the window could turn between messages
        pytest.skip("at a minute's edge")
    for i in range(3):
        await ws.send_json({"type": "message", "id": f"client-msg-{i}", "text": f"m{i}"})
    frames = [await ws.receive_json(timeout=5) for _ in range(5)]
    acks = [f["id"] for f in frames if f["type"] == "ack"]
    errors = [f for f in frames if f["type"] == "error"]
    assert acks == ["client-msg-0", "client-msg-1"]
    assert errors == [{"type": "error", "code": "rate_limited", "id": "client-msg-2"}]
    await ws.close()
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert not [m for m in ticket.messages if "m2" in m.text]


async def test_a_verified_visitor_joins_the_contact_of_their_email(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(yaml())
    carol, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="email", value="carol@example.com", strength="strong", source="dmarc"),),
        "Carol",
    )
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    user = {"email": "carol@example.com", "name": "Carol", "hash": "0" * 64}
    assert (await _hello(ws, user=user, after=0))["code"] == "identity"
    await ws.close()
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    user["hash"] = user_hash(IDENTITY, "carol@example.com")
    welcome = await _hello(ws, user=user, after=0)
    assert welcome["verified"] is True and welcome["visitor"] is None
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "It is Carol"})
    await _until(ws, "ack")
    await ws.close()
    await drain(rt)
    web, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="channel_user", value="u:carol@example.com", channel=Channel.WEBCHAT),),
        None,
    )
    assert web.id == carol.id


async def test_simulate_sends_over_the_socket(make_runtime: Any, aiohttp_server: Any) -> None:
    rt = make_runtime(yaml())
    server = await aiohttp_server(create_app(rt, role="serve"))
    cfg = rt.accounts.accounts["acme"].channel(Channel.WEBCHAT)
    assert isinstance(cfg, WebchatConfig)
    sim = SimulateInput(
        accounts=rt.accounts,
        account="acme",
        config=cfg,
        text="Hello from simulate",
        sender="visitor@example.com",
        name="Vi",
        call=False,
        now=time.time(),
        base_url=str(server.make_url("")),
    )
    out = SPEC.simulate(sim)
    assert inspect.iscoroutine(out)
    assert await out == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "webchat"


async def test_the_script_is_served_and_its_integrity_hash_is_documented(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(yaml())
    client = await aiohttp_client(create_app(rt, role="serve"))
    resp = await client.get(SCRIPT_PATH)
    assert resp.status == 200 and resp.content_type == "text/javascript"
    assert "deskbridge chat widget v1" in await resp.text()
    documented = re.findall(r"sha384-[A-Za-z0-9+/=]{64}", DOCS.read_text())
    assert documented and set(documented) == {integrity()}


async def test_outside_business_hours_the_offline_form_is_filed_with_its_email(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    closed = yaml() + "    routing:\n      business_hours: {time_zone: UTC, weekly: {}}\n"
    rt = make_runtime(closed)
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    assert (await _hello(ws, visitor=None, after=0))["online"] is False
    frame = {"type": "offline", "id": "offline-1x", "text": "Call me back", "email": "x"}
    await ws.send_json(frame)
    assert (await _until(ws, "error"))["code"] == "invalid"  # nothing stored
    await ws.send_json({**frame, "email": "Bo@Example.com"})
    assert (await _until(ws, "ack"))["id"] == "offline-1x"
    await ws.close()
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    filed = "\n".join(m.text for m in ticket.messages)
    assert "Call me back" in filed and "offline form" in filed


async def test_forgetting_the_contact_erases_their_widget_history(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    from deskbridge.flows.privacy import forget

    rt = make_runtime(yaml())
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    token = (await _hello(ws, visitor=None, after=0))["visitor"]
    visitor = token.partition(".")[0]
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "Forget me later"})
    await _until(ws, "ack")
    await ws.close()
    await drain(rt)
    assert [e.body["text"] for e in await rt.webchat.history("acme", visitor)] == [
        "Forget me later"
    ]
    contact, _ = await rt.conversations.observe_contact(
        "acme", (Identity(kind="channel_user", value=visitor, channel=Channel.WEBCHAT),), None
    )
    report = await forget(rt, "acme", contact.id, at_desk=False, who="test")
    assert report["removed"]["webchat_histories"] == 1
    assert await rt.webchat.history("acme", visitor) == []


def test_an_email_beside_a_user_id_is_verified_only_by_its_own_hash() -> None:
    """The user id's hash does not cover the email: a signed-in user could otherwise name
    anyone's address and join that person's contact."""
    now = datetime.now(UTC)
    good = user_hash(IDENTITY, "42")
    frame = {"type": "message", "id": "abcdef123", "text": "Hi"}

    def email_ids(v: Visitor) -> list[tuple[str, str, str | None]]:
        m = message("acme", v, frame, now=now, max_chars=10)
        return [(i.value, i.strength, i.source) for i in m.sender.identities if i.kind == "email"]

    claimed = verified(
        IDENTITY, user_hash_given=good, user_id="42", email="ceo@acme.com", name=None
    )
    assert not claimed.email_verified
    assert email_ids(claimed) == [("ceo@acme.com", "weak", "webchat_site")]
    signed = verified(
        IDENTITY,
        user_hash_given=good,
        user_id="42",
        email="carol@example.com",
        name=None,
        email_hash_given=user_hash(IDENTITY, "carol@example.com"),
    )
    assert email_ids(signed) == [("carol@example.com", "strong", "webchat_verified")]
    with pytest.raises(SignatureInvalid, match="email_hash"):
        verified(
            IDENTITY,
            user_hash_given=good,
            user_id="42",
            email="ceo@acme.com",
            name=None,
            email_hash_given=user_hash(IDENTITY, "carol@example.com"),
        )
    # the email as the signed subject (no user id) is verified by the one hash
    alone = verified(
        IDENTITY,
        user_hash_given=user_hash(IDENTITY, "carol@example.com"),
        user_id=None,
        email="carol@example.com",
        name=None,
    )
    assert email_ids(alone) == [("carol@example.com", "strong", "webchat_verified")]
    # a hash that is not ASCII is a refusal, not an error
    with pytest.raises(SignatureInvalid):
        verified(IDENTITY, user_hash_given="é" * 64, user_id="42", email=None, name=None)


@pytest.mark.parametrize(
    ("expires", "sig"), [("²", "x"), ("9999999999", "é"), ("", ""), ("1" * 13, "ab")]
)
def test_odd_upload_tokens_and_file_links_are_refusals(expires: str, sig: str) -> None:
    key = "a" * 32
    with pytest.raises(SignatureInvalid):
        check_upload_token(IDENTITY, "acme", f"{key}.{expires}.{sig}", now=0)
    with pytest.raises(SignatureInvalid):
        check_file_link(IDENTITY, "acme", key, "f" * 22, expires, sig, now=0)
