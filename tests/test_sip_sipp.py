"""The SIP stack against sipp, a real SIP peer, over loopback.

deskbridge's listener runs in-process (127.0.0.1, port 0, T1 = 50 ms) on a runtime with
the sandbox desk; sipp runs the scenarios in ``tests/sipp/`` as a carrier's trunk would
(UAC), or as the carrier's proxy our outbound MESSAGEs go to (UAS). Every sipp run is
bounded: a call count (``-m``, one call unless a test says otherwise), a global
``-timeout`` that fails the run, and a subprocess timeout. sipp's message trace
(``-trace_msg``) is read back to check what went over the wire. Skipped only where the
sipp binary is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.sip import Listener, SipAdapter
from deskbridge.adapters.sip.message import Request, Response, parse
from deskbridge.config import SipConfig
from deskbridge.errors import PermanentError
from deskbridge.flows import Runtime
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.schemas import AgentReply, Channel, ChannelAddress, Desk

from .conftest import drain

SIPP = shutil.which("sipp")
pytestmark = pytest.mark.skipif(
    SIPP is None,
    reason="sipp is not installed (Debian package sip-tester; `make test` installs it)",
)

SCENARIOS = Path(__file__).parent / "sipp"
SERVED = "+14155550100"
CALLER = "+16505551234"
CALLER_TEL = "+1-650-555-1234"  # as a trunk may write it: visual separators (RFC 3966)
CALL_CENTRE = "sip:+14155550199@callcentre.example"
SIPP_SECONDS = 10
"""sipp's own global timeout (then it fails); the subprocess gets a few more."""
TIMERS = {"t1": 0.05, "t2": 0.2, "t4": 10.0}
"""Fast retransmissions and Timers F/H/J (64*T1 = 3.2 s); T4 (Timer I: how long an ACKed
INVITE transaction absorbs ACK copies) long enough to look the transaction up after sipp
exits."""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def yaml_for(**channel: Any) -> str:
    """One account on the sandbox desk with a SIP channel on 127.0.0.1, port 0 (JSON is
    YAML, so the channel is written as JSON)."""
    values: dict[str, Any] = {
        "type": "sip",
        "listen": "127.0.0.1:0",
        "domains": ["127.0.0.1", "sip.acme.test"],
        "numbers": [SERVED],
        "trusted_peers": ["127.0.0.1/32"],
        "timers": TIMERS,
    }
    values.update(channel)
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - {json.dumps(values)}
"""


@dataclass
class Trace:
    """What sipp sent and received, parsed from its ``-trace_msg`` log."""

    sent: list[bytes]
    received: list[bytes]

    def requests(self, method: str) -> list[bytes]:
        return [m for m in self.received if m.startswith(method.encode() + b" ")]

    def responses(self) -> list[Response]:
        out = []
        for raw in self.received:
            msg = parse(raw)
            if isinstance(msg, Response):
                out.append(msg)
        return out


# "UDP message sent (404 bytes):" / "TCP message received [313] bytes :", a blank line,
# then the message itself
_TRACE_HEAD = re.compile(
    rb"^(?:UDP|TCP) message (sent|received) (?:\((\d+) bytes\)|\[(\d+)\] bytes) ?:\r?\n\r?\n",
    re.MULTILINE,
)


def read_trace(path: Path) -> Trace:
    """sipp logs each message after a header line naming its direction and length."""
    data = path.read_bytes() if path.exists() else b""
    sent: list[bytes] = []
    received: list[bytes] = []
    for m in _TRACE_HEAD.finditer(data):
        start = m.end()
        body = data[start : start + int(m.group(2) or m.group(3))]
        (sent if m.group(1) == b"sent" else received).append(body)
    return Trace(sent, received)


@dataclass
class SippRun:
    returncode: int
    output: str
    errors: str
    logs: str
    trace: Trace

    def explain(self) -> str:
        return (
            f"sipp exited {self.returncode}\n--- errors:\n{self.errors}\n"
            f"--- scenario logs:\n{self.logs}\n--- screen:\n{self.output[-3000:]}"
        )


async def sipp(
    scenario: str,
    tmp_path: Path,
    *args: str,
    remote: tuple[str, int] | None = None,
    port: int | None = None,
    calls: int = 1,
    transport: str = "u1",
    started: Callable[[], Awaitable[None]] | None = None,
    then_stop: bool = False,
) -> SippRun:
    """Run one bounded sipp scenario from ``tests/sipp``; as a UAC towards ``remote``, or
    as a UAS on ``port`` (``started`` runs once it is bound, e.g. to send to it; with
    ``then_stop`` sipp is then told to finish: SIGUSR1, no new calls)."""
    assert SIPP is not None
    port = port or free_port(socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM)
    name = Path(scenario).stem
    log = tmp_path / f"{name}.messages.log"
    err = tmp_path / f"{name}.errors.log"
    logs = tmp_path / f"{name}.logs.log"
    cmd = [SIPP]
    if remote is not None:
        cmd.append(f"{remote[0]}:{remote[1]}")
    cmd += [
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-bind_local",
        "-t",
        transport,
        "-m",
        str(calls),
        "-timeout",
        f"{SIPP_SECONDS}s",
        "-timeout_error",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log),
        "-trace_err",
        "-error_file",
        str(err),
        "-trace_logs",
        "-log_file",
        str(logs),
        *args,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        if started is not None:
            await _bound(
                port, proc, socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM
            )
            await started()
            if then_stop and proc.returncode is None:
                proc.send_signal(signal.SIGUSR1)
        out, _ = await asyncio.wait_for(proc.communicate(), SIPP_SECONDS + 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return SippRun(
        returncode=proc.returncode or 0,
        output=out.decode("utf-8", "replace"),
        errors=err.read_text("utf-8", "replace") if err.exists() else "",
        logs=logs.read_text("utf-8", "replace") if logs.exists() else "",
        trace=read_trace(log),
    )


async def _bound(port: int, proc: asyncio.subprocess.Process, kind: int) -> None:
    """Wait until sipp holds its port (a bind of our own then fails)."""
    for _ in range(200):
        if proc.returncode is not None:
            return
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        await asyncio.sleep(0.02)
    raise AssertionError("sipp did not bind its port")


# --- the listener ---------------------------------------------------------------------


@pytest.fixture
async def sip_listener(make_runtime: Any) -> AsyncIterator[Any]:
    """``await start(**channel)`` → (runtime, listener): the SIP listener of a fresh
    runtime, closed at the end of the test."""
    started: list[Listener] = []

    async def start(**channel: Any) -> tuple[Runtime, Listener]:
        rt = make_runtime(yaml_for(**channel))
        listeners = await start_sip_listeners(rt)
        assert len(listeners) == 1
        started.extend(listeners)
        return rt, listeners[0]

    yield start
    for listener in started:
        await listener.close()


def uac_keys(text: str = "Hello from sipp") -> list[str]:
    return ["-s", SERVED, "-key", "caller", CALLER_TEL, "-key", "text", text]


async def caller_conversation(rt: Runtime) -> Any:
    conv_id = rt.conversations.conversation_id("acme", Channel.SIP, CALLER)
    return await rt.conversations.get("acme", conv_id)


# --- MESSAGE in -----------------------------------------------------------------------


def only_response(run: SippRun, status: int) -> Response:
    [resp] = [r for r in run.trace.responses() if r.status == status]
    return resp


async def assert_delivered(rt: Runtime, text: str) -> None:
    """One ticket holding ``text``, on the conversation of the caller's E.164 number, whose
    contact has that number as a strong (asserted) identity."""
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    # sipp ends every body line with CRLF, the last one too
    assert [m.text.rstrip("\r\n") for m in ticket.messages] == [text]
    conv = await caller_conversation(rt)
    assert conv is not None and conv.ticket_id == ticket.id
    contact = await rt.conversations.contact("acme", conv.contact_id)
    assert contact is not None
    phones = [(i.value, i.strength) for i in contact.identities if i.kind == "phone"]
    assert phones == [(CALLER, "strong")]


async def test_message_over_udp_is_answered_200_and_delivered(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener()
    run = await sipp("message.xml", tmp_path, *uac_keys(), remote=listener.addresses()["udp"])
    assert run.returncode == 0, run.explain()
    ok = only_response(run, 200)
    assert (ok.headers.get("To") or "").count(";tag=") == 1
    assert "received=127.0.0.1" in ok.headers.get_all("Via")[0]
    await listener.close()
    await assert_delivered(rt, "Hello from sipp")


async def test_message_over_tcp_is_answered_200_and_delivered(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener(transports=["tcp"])
    text = "Olá, pedido 42 — sobre TCP"
    run = await sipp(
        "message.xml",
        tmp_path,
        *uac_keys(text),
        remote=listener.addresses()["tcp"],
        transport="t1",
    )
    assert run.returncode == 0, run.explain()
    assert only_response(run, 200).headers.get_all("Via")[0].startswith("SIP/2.0/TCP ")
    await listener.close()
    await assert_delivered(rt, text)


async def test_a_retransmission_is_answered_again_and_a_duplicate_is_not_filed_twice(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener()
    run = await sipp(
        "message_retransmit.xml",
        tmp_path,
        *uac_keys("Only once, please"),
        "-nr",  # sipp itself retransmits nothing, and takes each 200 as a new answer
        remote=listener.addresses()["udp"],
    )
    assert run.returncode == 0, run.explain()
    assert len(run.trace.sent) == 3
    first, again, duplicate = run.trace.received
    ok = parse(first)
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.top_via().branch.endswith("-copy")
    # the retransmission (same branch) got the transaction's response again, byte for byte
    assert again == first
    # the duplicate (new branch, same Call-ID and CSeq) is a new transaction: its own 200
    resp = parse(duplicate)
    assert isinstance(resp, Response) and resp.status == 200
    assert resp.top_via().branch.endswith("-again")
    assert resp.headers.get("To") != ok.headers.get("To")  # another To tag
    await listener.close()
    await assert_delivered(rt, "Only once, please")


async def test_an_untrusted_source_is_refused_403_and_nothing_is_stored(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener(trusted_peers=["10.0.0.0/8"])
    run = await sipp(
        "message_untrusted.xml",
        tmp_path,
        *uac_keys("let me in"),
        remote=listener.addresses()["udp"],
    )
    assert run.returncode == 0, run.explain()
    assert [r.status for r in run.trace.responses()] == [403]
    await listener.close()
    await drain(rt)
    assert await rt.sandbox.tickets("acme") == []
    assert await caller_conversation(rt) is None


async def test_options_is_answered_200_with_allow(sip_listener: Any, tmp_path: Path) -> None:
    _, listener = await sip_listener()
    run = await sipp("options.xml", tmp_path, "-s", SERVED, remote=listener.addresses()["udp"])
    assert run.returncode == 0, run.explain()
    allow = only_response(run, 200).headers.get_all("Allow")
    assert {"INVITE", "ACK", "CANCEL", "OPTIONS", "MESSAGE"} <= set(allow)


# --- calls ----------------------------------------------------------------------------


def acked(listener: Listener, run: SippRun) -> bool:
    """sipp's ACK reached the INVITE's server transaction (§17.2.1: Completed →
    Confirmed), so the final response is not retransmitted any more."""
    [ack] = [m for m in run.trace.sent if m.startswith(b"ACK ")]
    req = parse(ack)
    assert isinstance(req, Request)
    tx = listener.service.transactions.match(req)
    return tx is not None and tx.acked


async def call_texts(rt: Runtime) -> list[str]:
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    conv = await caller_conversation(rt)
    assert conv is not None and conv.ticket_id == ticket.id
    return [m.text for m in ticket.messages]


async def test_invite_is_redirected_302_to_the_call_centre_and_recorded(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener(calls={"action": "redirect", "redirect_to": CALL_CENTRE})
    run = await sipp(
        "invite_redirect.xml", tmp_path, *uac_keys(), remote=listener.addresses()["udp"]
    )
    assert run.returncode == 0, run.explain()
    assert [r.status for r in run.trace.responses()] == [100, 302]
    assert only_response(run, 302).headers.get("Contact") == f"<{CALL_CENTRE}>"
    assert acked(listener, run)
    await listener.close()
    [text] = await call_texts(rt)
    assert text.startswith("Call from +1 650 555 1234 to +1 415 555 0100 at ")
    assert text.endswith(f", forwarded to the call centre ({CALL_CENTRE}).")


async def test_invite_answered_480_is_a_missed_call_with_a_callback_request(
    sip_listener: Any, tmp_path: Path
) -> None:
    rt, listener = await sip_listener(calls={"action": "reject", "reject_status": 480})
    run = await sipp("invite_reject.xml", tmp_path, *uac_keys(), remote=listener.addresses()["udp"])
    assert run.returncode == 0, run.explain()
    assert [r.status for r in run.trace.responses()] == [100, 480]
    assert acked(listener, run)
    await listener.close()
    [text] = await call_texts(rt)
    assert text.startswith("Missed call from +1 650 555 1234 to +1 415 555 0100 at ")
    assert text.endswith(" (callback requested).")


async def test_a_gateway_invite_over_tcp_from_a_local_tel_uri_is_a_missed_call(
    sip_listener: Any, tmp_path: Path
) -> None:
    """Issue 17: Content-Length mid-header over TCP used to close the connection
    silently; ``<tel:6505551234>`` (no phone-context) got 400; no Max-Forwards got 400.
    The call is now on the ticket, the caller read as a number of the trunk's country."""
    rt, listener = await sip_listener(
        transports=["tcp"], calls={"action": "reject", "reject_status": 480}
    )
    run = await sipp(
        "invite_gateway_tcp.xml",
        tmp_path,
        "-s",
        SERVED,
        "-key",
        "national",
        "6505551234",
        remote=listener.addresses()["tcp"],
        transport="t1",
    )
    assert run.returncode == 0, run.explain()
    assert [r.status for r in run.trace.responses()] == [100, 480]
    await listener.close()
    [text] = await call_texts(rt)
    assert text.startswith("Missed call from +1 650 555 1234 to +1 415 555 0100 at ")


async def test_invite_cancelled_while_ringing_gets_487_and_is_a_missed_call(
    sip_listener: Any, tmp_path: Path
) -> None:
    # it rings for 5 s unless cancelled; sipp cancels on the 180
    rt, listener = await sip_listener(calls={"action": "reject", "ring_seconds": 5})
    run = await sipp("invite_cancel.xml", tmp_path, *uac_keys(), remote=listener.addresses()["udp"])
    assert run.returncode == 0, run.explain()
    statuses = [(r.status, r.cseq[1]) for r in run.trace.responses()]
    assert statuses == [(100, "INVITE"), (180, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    assert acked(listener, run)
    await listener.close()  # lets the call being filed finish
    [text] = await call_texts(rt)
    assert text.startswith("Missed call from +1 650 555 1234 to +1 415 555 0100 at ")
    assert "the caller hung up" in text and "callback" not in text


# --- MESSAGE out ----------------------------------------------------------------------


class _NoLinks:
    def url_for(self, account: str, attachment: Any, *, ttl: float | None = None) -> str:
        raise AssertionError("no attachments here")

    def video_preview_url(self) -> str:
        raise AssertionError("no attachments here")


USER, PASSWORD = "acme-trunk", "s3cret-pass"
REALM, NONCE = "trunk.example", "47ebe028cda119c35d4877b383027d28da013815"
"""As the UAS scenarios challenge."""


def expected_digest(uri: str) -> str:
    """RFC 2617 §3.2.2 without qop: the answer to the scenarios' 407, worked out here
    independently of deskbridge's digest module."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - SIP digest is MD5

    return md5(f"{md5(f'{USER}:{REALM}:{PASSWORD}')}:{NONCE}:{md5(f'MESSAGE:{uri}')}")


def outbound_adapter(**config: Any) -> SipAdapter:
    values: dict[str, Any] = {
        "domains": ["sip.acme.test"],
        "numbers": [SERVED],
        "trusted_peers": ["127.0.0.1/32"],
        "username": USER,
        "password": PASSWORD,
        "timers": TIMERS,
    }
    values.update(config)
    return SipAdapter("acme", SipConfig.model_validate(values), _NoLinks())


def agent_reply(text: str) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="sandbox:reply:1",
        ticket_id="1",
        external_id="1-2",
        text=text,
        occurred_at=datetime.now(UTC),
    )


def customer(context: dict[str, str]) -> ChannelAddress:
    return ChannelAddress(channel=Channel.SIP, account="acme", thread=CALLER, context=context)


def auth_keys(uri: str) -> list[str]:
    return [
        "-key",
        "user",
        USER,
        "-key",
        "pass",
        PASSWORD,
        "-key",
        "expected",
        expected_digest(uri),
    ]


def check_challenged(run: SippRun, parts: int, status: int = 407) -> list[Request]:
    """Every part was challenged once, answered with credentials from the same socket,
    and accepted; the accepted MESSAGEs, in order."""
    assert run.returncode == 0, run.explain()
    messages = [parse(m) for m in run.trace.requests("MESSAGE")]
    assert len(messages) == 2 * parts, run.explain()
    statuses = [int(m.split(b" ", 2)[1]) for m in run.trace.sent]
    assert statuses == [status, 200] * parts, run.explain()
    header = "Proxy-Authorization" if status == 407 else "Authorization"
    accepted: list[Request] = []
    for first, second in zip(messages[::2], messages[1::2], strict=True):
        assert isinstance(first, Request) and isinstance(second, Request)
        assert first.headers.get(header) is None
        assert (second.headers.get(header) or "").startswith("Digest ")
        assert second.call_id == first.call_id and second.cseq == (2, "MESSAGE")
        assert second.top_via().port == first.top_via().port  # one socket
        accepted.append(second)
    return accepted


async def test_outbound_message_answers_a_407_challenge_and_is_delivered(
    tmp_path: Path,
) -> None:
    adapter = outbound_adapter()
    port = free_port()
    uri = f"sip:{CALLER}@127.0.0.1"
    to = customer(
        {
            "reply_uri": uri,
            "served": SERVED,
            "next_hop": f"127.0.0.1|{port}",  # the trunk the customer's message came from
            "transport": "udp",
        }
    )
    receipts = []

    async def send() -> None:
        receipts.append(await adapter.send(agent_reply("Your order ships today."), to, []))

    run = await sipp("uas_message_407.xml", tmp_path, *auth_keys(uri), port=port, started=send)
    [accepted] = check_challenged(run, parts=1)
    assert len(receipts[0].external_ids) == 1
    assert accepted.uri == uri
    assert accepted.body == b"Your order ships today."
    assert (accepted.headers.get("From") or "").startswith(
        f"<sip:{SERVED}@sip.acme.test;user=phone>;tag="
    )


async def test_outbound_message_answers_a_401_challenge_that_sipp_verifies(
    tmp_path: Path,
) -> None:
    """sipp's own digest check (verifyauth, qop=auth with our cnonce)."""
    adapter = outbound_adapter()
    port = free_port()
    uri = f"sip:{CALLER}@127.0.0.1"
    to = customer(
        {"reply_uri": uri, "served": SERVED, "next_hop": f"127.0.0.1|{port}", "transport": "udp"}
    )
    receipts = []

    async def send() -> None:
        receipts.append(await adapter.send(agent_reply("Verified by sipp."), to, []))

    run = await sipp("uas_message_401.xml", tmp_path, *auth_keys(uri), port=port, started=send)
    [accepted] = check_challenged(run, parts=1, status=401)
    assert "qop=auth" in (accepted.headers.get("Authorization") or "")
    assert len(receipts[0].external_ids) == 1


async def test_outbound_message_over_tcp_retries_on_the_challenged_connection(
    tmp_path: Path,
) -> None:
    port = free_port(socket.SOCK_STREAM)
    adapter = outbound_adapter(outbound_proxy=f"127.0.0.1:{port}", outbound_transport="tcp")
    uri = f"sip:{CALLER}@carrier.example"
    to = customer({"reply_uri": uri, "served": SERVED})
    receipts = []

    async def send() -> None:
        receipts.append(await adapter.send(agent_reply("Sent over TCP."), to, []))

    run = await sipp(
        "uas_message_407.xml",
        tmp_path,
        *auth_keys(uri),
        port=port,
        transport="t1",
        started=send,
    )
    [accepted] = check_challenged(run, parts=1)
    assert accepted.top_via().transport == "TCP"
    assert accepted.body == b"Sent over TCP."
    assert len(receipts[0].external_ids) == 1


@pytest.mark.parametrize("scenario", ["uas_message_407.xml", "uas_message_401.xml"])
async def test_wrong_credentials_are_refused_and_the_failure_is_permanent(
    scenario: str, tmp_path: Path
) -> None:
    """The scenarios' checks are real: a wrong password gets 403, which is final."""
    adapter = outbound_adapter(password="not-the-password")
    port = free_port()
    uri = f"sip:{CALLER}@127.0.0.1"
    to = customer(
        {"reply_uri": uri, "served": SERVED, "next_hop": f"127.0.0.1|{port}", "transport": "udp"}
    )
    errors: list[Exception] = []

    async def send() -> None:
        try:
            await adapter.send(agent_reply("With the wrong password."), to, [])
        except PermanentError as exc:
            errors.append(exc)

    run = await sipp(scenario, tmp_path, *auth_keys(uri), port=port, started=send)
    assert run.returncode == 0, run.explain()
    assert [int(m.split(b" ", 2)[1]) for m in run.trace.sent][1:] == [403]
    [error] = errors
    assert "403" in str(error)


async def test_a_long_reply_over_udp_is_split_into_messages_of_at_most_1300_bytes(
    tmp_path: Path,
) -> None:
    port = free_port()
    adapter = outbound_adapter(outbound_proxy=f"127.0.0.1:{port}")
    uri = f"sip:{CALLER}@carrier.example"
    to = customer({"reply_uri": uri, "served": SERVED})
    text = " ".join(f"Olá {i}: ação confirmada ✓." for i in range(120))
    receipts = []

    async def send() -> None:
        receipts.append(await adapter.send(agent_reply(text), to, []))

    # each part is a call (Call-ID) of its own; sipp stops once the reply is sent
    run = await sipp(
        "uas_message_407.xml",
        tmp_path,
        *auth_keys(uri),
        port=port,
        calls=50,
        started=send,
        then_stop=True,
    )
    parts = len(receipts[0].external_ids)
    assert parts >= 3
    accepted = check_challenged(run, parts=parts)
    assert all(len(m) <= 1300 for m in run.trace.requests("MESSAGE"))
    # split at spaces, which the cuts drop
    assert " ".join(m.body.decode("utf-8") for m in accepted) == text
