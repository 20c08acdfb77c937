"""SIP end to end through the runtime: a trunk's MESSAGE and call reach the sandbox desk
as one conversation, and the agent's reply leaves as a SIP MESSAGE to the trunk."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.errors import ConfigError
from deskbridge.flows.ingest import accept_replies
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.schemas import AgentReply, Channel, Desk

from .conftest import drain, self_signed_cert
from .test_sip import far_end


def yaml_for(sandbox: bool = True) -> str:
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: sip
        listen: "127.0.0.1:0"
        transports: [udp]
        domains: [sip.acme.example]
        numbers: ["+14155550100"]
        trusted_peers: [127.0.0.1/32]
        sandbox: {str(sandbox).lower()}
        timers: {{t1: 0.02, t2: 0.16, t4: 0.1}}
"""


async def test_text_and_call_share_a_ticket_and_the_reply_goes_out_as_message(
    make_runtime,
) -> None:
    rt = make_runtime(yaml_for(sandbox=False))
    [listener] = await start_sip_listeners(rt)
    try:
        dest = listener.addresses()["udp"]
        target = "sip:+14155550100@sip.acme.example"
        status = await send_sample(
            dest, text="Where is my parcel?", sender="tel:+16505551234", target=target
        )
        assert status == 200
        assert (
            await send_sample(dest, text="", sender="tel:+16505551234", target=target, call=True)
            == 480
        )
        await drain(rt)
        [ticket] = await rt.sandbox.tickets("acme")
        assert ticket.channel == "sip"
        texts = [m.text for m in ticket.messages]
        assert texts[0] == "Where is my parcel?"
        assert texts[1].startswith("Missed call from +1 650 555 1234 to +1 415 555 0100 at ")
        assert texts[1].endswith("(callback requested).")

        # the reply goes back to the trunk that delivered the customer's text: here a
        # local far end, so point the conversation's next hop at it
        async with far_end(None) as (far, port):
            conv_id = rt.conversations.conversation_id("acme", Channel.SIP, "+16505551234")
            conv = await rt.conversations.get("acme", conv_id)
            assert conv is not None
            context = {**conv.context, "next_hop": f"127.0.0.1|{port}"}
            await rt.conversations.set_context("acme", conv_id, context)
            reply = AgentReply(
                account="acme",
                desk=Desk.SANDBOX,
                dedup_key="r1",
                ticket_id=ticket.id,
                external_id="a1",
                text="It arrives tomorrow.",
                occurred_at=datetime.now(UTC),
            )
            await accept_replies(rt, "acme", "sandbox", None, [reply])
            await drain(rt)
            for _ in range(50):
                if far.requests:
                    break
                await asyncio.sleep(0.01)
        [sent] = far.requests
        assert sent.method == "MESSAGE" and sent.body == b"It arrives tomorrow."
        assert sent.uri.startswith("sip:") or sent.uri.startswith("tel:")
        assert "+16505551234" in sent.uri
        assert (sent.headers.get("From") or "").startswith("<sip:+14155550100@sip.acme.example")
    finally:
        await listener.close()


async def test_sandbox_mode_keeps_the_outbound_message(make_runtime) -> None:
    rt = make_runtime(yaml_for(sandbox=True))
    [listener] = await start_sip_listeners(rt)
    try:
        dest = listener.addresses()["udp"]
        target = "sip:+14155550100@sip.acme.example"
        assert await send_sample(dest, text="hi", sender="tel:+16505551234", target=target) == 200
        await drain(rt)
        [ticket] = await rt.sandbox.tickets("acme")
        reply = AgentReply(
            account="acme",
            desk=Desk.SANDBOX,
            dedup_key="r2",
            ticket_id=ticket.id,
            external_id="a2",
            text="Hello back",
            occurred_at=datetime.now(UTC),
        )
        await accept_replies(rt, "acme", "sandbox", None, [reply])
        await drain(rt)
        [sent] = await rt.sandbox.sent("acme")
        assert sent["channel"] == "sip" and sent["method"] == "MESSAGE"
        assert sent["text"] == "Hello back"  # readable; the wire message is the detail
        assert sent["detail"].startswith("MESSAGE ") and sent["detail"].endswith("Hello back")
    finally:
        await listener.close()


def write_cert(tmp_path) -> tuple[str, str]:
    return self_signed_cert(tmp_path, "sip.acme.example", stem="sip")


async def test_sip_over_tls_with_a_configured_certificate(make_runtime, tmp_path) -> None:
    import ssl

    from deskbridge.adapters.sip.client import send_request

    from .test_email_listener import free_port
    from .test_sip import FAST, request

    cert, key = write_cert(tmp_path)
    port = free_port()
    rt = make_runtime(
        yaml_for()
        + f'        tls_listen: "127.0.0.1:{port}"\n'
        + f'        tls_cert_path: "{cert}"\n'
        + f'        tls_key_path: "{key}"\n'
    )
    [listener] = await start_sip_listeners(rt)
    try:
        assert listener.addresses()["tls"] == ("127.0.0.1", port)
        client = ssl.create_default_context(cafile=cert)
        client.check_hostname = False

        def build(host: str, local_port: int, transport: str):
            assert transport == "TLS"
            return request("MESSAGE", local_port, text="over TLS", transport=transport)

        resp = await send_request(
            build, ("127.0.0.1", port), transport="tls", timers=FAST, tls=client
        )
        assert resp.status == 200
        await drain(rt)
        [ticket] = await rt.sandbox.tickets("acme")
        assert [m.text for m in ticket.messages] == ["over TLS"]
    finally:
        await listener.close()


async def test_a_listener_that_cannot_bind_names_its_port(make_runtime) -> None:
    import socket

    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        rt = make_runtime(yaml_for().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
        busy_port = f"sip port 127.0.0.1:{port}: Address already in use"
        with pytest.raises(ConfigError, match=busy_port):
            await start_sip_listeners(rt)
    finally:
        busy.close()


async def test_a_sender_with_only_a_from_header_shows_its_number_or_uri_user(
    make_runtime,
) -> None:
    from deskbridge.outbound.common import display_name

    rt = make_runtime(yaml_for(sandbox=True))
    [listener] = await start_sip_listeners(rt)
    try:
        dest = listener.addresses()["udp"]
        for sender in ("sip:+16505550142@carrier.example", "sip:alice@example.org"):
            target = "sip:+14155550100@sip.acme.example"
            assert await send_sample(dest, text="hello", sender=sender, target=target) == 200
        await drain(rt)
        tickets = {t.requester: t for t in await rt.sandbox.tickets("acme")}
        assert set(tickets) == {"+16505550142", "alice"}  # was "customer" for both
        names = set()
        for conv_id in {
            rt.conversations.conversation_id("acme", Channel.SIP, "+16505550142"),
            rt.conversations.conversation_id("acme", Channel.SIP, "sip:alice@example.org"),
        }:
            conv = await rt.conversations.get("acme", conv_id)
            assert conv is not None
            contact = await rt.conversations.contact("acme", conv.contact_id)
            assert contact is not None
            names.add(display_name(contact))
        assert names == {"+16505550142 (SIP)", "alice (SIP)"}  # the desk user: was "Sip user"
    finally:
        await listener.close()
