"""The SIP corpus (tests/corpus/sip): RFC 4475's torture messages, RFC 3428's examples
and gateway INVITEs, each run through the parser, the stream framer and the UAS core,
and held to the outcome ``expected.json`` states for it (from the RFC's own text, or
what a support lead expects: the caller recorded once, readable).

An outcome is ``parse`` (``request``, ``response`` or ``error``), the ``answer`` the UAS
sends (a final status, or null for silence: responses and unanswerable garbage), the
``headers`` that answer must carry, and the ``event`` stored (``message`` or ``call``,
with its ``thread`` and ``text``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    frame,
    parse,
)
from deskbridge.adapters.sip.receiver import SipReceiver
from deskbridge.adapters.sip.server import SipService
from deskbridge.adapters.sip.transaction import Timers
from deskbridge.config import SipConfig
from deskbridge.schemas import CallEvent, Message, RawRequest

CORPUS = Path(__file__).parent / "corpus" / "sip"
ITEMS: list[dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())
FAST = Timers(t1=0.02, t2=0.16, t4=0.1)
SOURCE = ("127.0.0.1", 5060)
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def config() -> SipConfig:
    return SipConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            # every Request-URI host of the corpus is ours; any user there is served
            "domains": [
                "chair-dnrc.example.com",
                "company.com",
                "domain.com",
                "example.com",
                "example.net",
                "example.org",
                "sip.acme.example",
            ],
            "trusted_peers": ["127.0.0.0/8"],
            "calls": {"action": "reject", "reject_status": 480, "ring_seconds": 0},
        }
    )


class Flow:
    """A UDP flow that keeps what the UAS sends, and says when a final answer went."""

    transport = "UDP"
    reliable = False
    peer = SOURCE

    def __init__(self) -> None:
        self.sent: list[Response] = []
        self.final = asyncio.Event()

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        resp = _read_response(data)
        self.sent.append(resp)
        if resp.status >= 200:
            self.final.set()


def _read_response(data: bytes) -> Response:
    """A response as sent, without judging it: an answer to a request with a bad header
    copies that header, so the strict parser would refuse it."""
    head, _, body = data.partition(b"\r\n\r\n")
    start, *lines = head.decode().split("\r\n")
    version, status, reason = start.split(" ", 2)
    assert version == "SIP/2.0"
    headers = Headers()
    for line in lines:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    return Response(int(status), reason, headers, body)


class Stored:
    def __init__(self) -> None:
        self.events: list[Message | CallEvent] = []

    async def __call__(self, account: str, raw: RawRequest, events: list[Any]) -> None:
        self.events.extend(events)


def _id(item: dict[str, Any]) -> str:
    return str(item["file"])


def test_every_corpus_file_has_an_expected_outcome() -> None:
    files = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.suffix in (".dat", ".sip") and p.is_file()
    }
    assert files == {i["file"] for i in ITEMS}
    assert len([f for f in files if f.startswith("rfc4475/")]) == 49  # RFC 4475 §3


@pytest.mark.parametrize("item", ITEMS, ids=_id)
def test_the_parser_reads_each_message_as_expected(item: dict[str, Any]) -> None:
    data = (CORPUS / item["file"]).read_bytes()
    if item["parse"] == "error":
        with pytest.raises(SipParseError) as info:
            parse(data)
        assert info.value.answerable is (item["answer"] is not None)
        if info.value.answerable:
            assert info.value.status == item["answer"]
        return
    msg = parse(data)
    kind = "request" if isinstance(msg, Request) else "response"
    assert kind == item["parse"]


@pytest.mark.parametrize(
    "item",
    [i for i in ITEMS if i["parse"] == "request" and not i.get("unframed")],
    ids=_id,
)
def test_a_stream_frames_each_request_wherever_its_content_length_is(
    item: dict[str, Any],
) -> None:
    """§18.3 over TCP: the message is cut at its Content-Length, whichever line (and
    spelling) holds it, and the next one starts right after."""
    data = (CORPUS / item["file"]).read_bytes()
    one = parse(data)
    assert isinstance(one, Request)
    wire = one.encode()  # what the datagram says, as one stream message
    buffer = bytearray(b"\r\n" + data[: data.find(b"\r\n\r\n") + 4] + one.body + wire)
    first, used = frame(buffer, 65536)
    assert first is not None
    framed = parse(first, stream=True)
    assert isinstance(framed, Request) and framed.body == one.body
    del buffer[:used]
    second, _ = frame(buffer, 65536)
    assert second == wire


@pytest.mark.parametrize("item", ITEMS, ids=_id)
async def test_the_uas_answers_each_message_as_expected(item: dict[str, Any]) -> None:
    stored = Stored()
    service = SipService([SipReceiver("acme", config())], stored, timers=FAST, clock=lambda: NOW)
    flow = Flow()
    try:
        service.received((CORPUS / item["file"]).read_bytes(), SOURCE, flow)
        if item["answer"] is None:
            for _ in range(5):
                await asyncio.sleep(0)
            assert flow.sent == []
        else:
            # a safety net, not a timing assertion: the answer is due at once
            await asyncio.wait_for(flow.final.wait(), timeout=10)
            final = [r for r in flow.sent if r.status >= 200]
            assert final[0].status == item["answer"], final[0].reason
            _check_answer(final[0], item)
    finally:
        await service.close()
    _check_event(stored.events, item)


def _check_answer(resp: Response, item: dict[str, Any]) -> None:
    for name, value in item.get("headers", {}).items():
        assert resp.headers.get(name) == value, name
    data = (CORPUS / item["file"]).read_bytes()
    call_id = next(
        (
            line.partition(b":")[2].strip().decode()
            for line in data.split(b"\r\n")
            if line.lower().startswith((b"call-id", b"i:", b"i :"))
        ),
        None,
    )
    # §8.2.6.2: whatever could be read is copied back, with a To tag added
    assert resp.headers.get("Call-ID") == call_id
    assert resp.headers.get("Via") is not None
    if resp.headers.get("To") is not None:
        assert "tag" in (resp.headers.get("To") or "")


def _check_event(events: list[Message | CallEvent], item: dict[str, Any]) -> None:
    expected = item.get("event")
    if expected is None:
        assert events == []
        return
    assert len(events) == 1
    event = events[0]
    assert event.kind == expected["kind"]
    assert event.thread == expected["thread"]
    if "text" in expected:
        assert isinstance(event, Message) and event.text == expected["text"]


async def test_no_corpus_message_nor_any_cut_of_it_trips_the_uas() -> None:
    """Every prefix of every corpus message (a datagram cut short, every 23 bytes) is
    answered or dropped by decision: never the catch-all of an unexpected error."""
    counted: list[tuple[str, str]] = []
    service = SipService(
        [SipReceiver("acme", config())],
        Stored(),
        timers=FAST,
        count=lambda outcome, reason: counted.append((outcome, reason)),
        clock=lambda: NOW,
    )
    try:
        for item in ITEMS:
            data = (CORPUS / item["file"]).read_bytes()
            for cut in range(1, len(data) + 1, 23):
                service.received(data[:cut], SOURCE, Flow())
            for _ in range(3):
                await asyncio.sleep(0)
    finally:
        await service.close()
    assert counted
    assert ("error", "internal") not in counted
