"""SIP requests are re-ingestable: the listener keeps each stored request's bytes, and
re-ingest parses them again with the account's SIP receiver (SIP has no webhook URL,
so no entry in the receivers' registry)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deskbridge.adapters.sip.receiver import SipReceiver, StoredSip, raw_request
from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.config import SipConfig
from deskbridge.errors import ParseFailed, RequestRefused, SignatureInvalid
from deskbridge.flows.reingest import reingest_one
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.schemas import CallEvent
from deskbridge.store import keys
from deskbridge.store.listing import RawFilter

from .test_e2e_sip import yaml_for


async def test_stored_sip_requests_are_reingested_as_duplicates_then_as_new(
    make_runtime, redis
) -> None:
    rt = make_runtime(yaml_for(sandbox=True))
    [listener] = await start_sip_listeners(rt)
    try:
        dest = listener.addresses()["udp"]
        target = "sip:+14155550100@sip.acme.example"
        sender = "tel:+16505551234"
        assert await send_sample(dest, text="Hello", sender=sender, target=target) == 200
        assert await send_sample(dest, text="", sender=sender, target=target, call=True) == 480
    finally:
        await listener.close()
    page = await rt.listing.raws({"acme": ["sip"]}, RawFilter(), limit=10)
    assert len(page.items) == 2

    outcomes = [
        await reingest_one(rt, e, who="test", dry_run=False, allow_duplicates=False)
        for e in page.items
    ]
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    assert sorted(ev["kind"] for o in outcomes for ev in o.events) == ["call", "message"]
    # the live intake took them: the same dedup keys, nothing stored twice
    assert {ev["status"] for o in outcomes for ev in o.events} == {"duplicate"}

    # once the dedup marks are gone (a parser fix, long after), they are taken again
    for key in await redis.keys(keys.dedup("acme", "sip", "*")):
        await redis.delete(key)
    again = [
        await reingest_one(rt, e, who="test", dry_run=False, allow_duplicates=False)
        for e in page.items
    ]
    assert {ev["status"] for o in again for ev in o.events} == {"new"}
    [message] = [ev for o in again for ev in o.events if ev["kind"] == "message"]
    d = await rt.deliveries.get("acme", message["delivery_id"])
    assert d is not None


def test_a_stored_invite_is_the_call_the_account_records_and_garbage_is_refused() -> None:
    config = SipConfig.model_validate(
        {
            "domains": ["sip.acme.example"],
            "numbers": ["+14155550100"],
            "trusted_peers": ["127.0.0.1"],
            "calls": {"action": "redirect", "redirect_to": "sip:desk@pbx.acme.example"},
        }
    )
    stored = StoredSip(SipReceiver("acme", config))
    when = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    invite = (
        b"INVITE sip:+14155550100@sip.acme.example SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKre2\r\n"
        b"From: <tel:12345>;tag=1\r\nTo: <sip:+14155550100@sip.acme.example>\r\n"
        b"Call-ID: re2@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    [call] = stored.parse(raw_request("acme", invite, ("127.0.0.1", 5062), "TCP", when)).events
    assert isinstance(call, CallEvent)
    assert (call.state, call.redirected_to, call.thread, call.occurred_at) == (
        "redirected",
        "sip:desk@pbx.acme.example",
        "tel:12345",
        when,
    )
    with pytest.raises(ParseFailed):
        stored.parse(raw_request("acme", b"not sip", ("127.0.0.1", 1), "UDP"))
    with pytest.raises(RequestRefused):  # not a served number
        stored.parse(
            raw_request(
                "acme", invite.replace(b"+14155550100@", b"+14155550199@", 1), ("::1", 1), "TCP"
            )
        )
    with pytest.raises(SignatureInvalid):
        stored.verify(raw_request("acme", invite, ("127.0.0.1", 1), "TCP"))
