"""Property tests over every parser of untrusted input: channel webhooks, the MIME and SIP
parsers, desk webhooks. Arbitrary bytes, and the recorded fixtures with subtrees replaced
by arbitrary JSON, must give events or one of our typed rejections, nothing else.

``make test`` runs a short campaign; ``make fuzz`` a long one
(``DESKBRIDGE_FUZZ_EXAMPLES``, default 25 examples a property here).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deskbridge.adapters.email import mime, webhooks
from deskbridge.adapters.line import parse as line
from deskbridge.adapters.messenger import parse as messenger
from deskbridge.adapters.sip import message as sip
from deskbridge.adapters.telegram import parse as telegram
from deskbridge.adapters.whatsapp import parse as whatsapp
from deskbridge.errors import ParseFailed, RequestRefused
from deskbridge.outbound.intercom import webhook as intercom
from deskbridge.outbound.udesk import replies as udesk
from deskbridge.outbound.zendesk import webhook as zendesk
from deskbridge.schemas import RawRequest

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = int(os.environ.get("DESKBRIDGE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 25,  # the short campaign is the same on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TYPED = (RequestRefused, ParseFailed)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def req(body: bytes, content_type: str = "application/json") -> RawRequest:
    return RawRequest(method="POST", path="/x", headers={"content-type": content_type}, body=body)


PARSERS: dict[str, Callable[[bytes], object]] = {
    "telegram": lambda b: telegram.parse(b, account="acme"),
    "whatsapp": lambda b: whatsapp.parse(b, {"200000000000002": "acme"}),
    "messenger": lambda b: messenger.parse(b, routes={"300000000000001": "acme"}),
    "line": lambda b: line.parse(b, account="acme"),
    "zendesk": lambda b: zendesk.parse(req(b), account="acme", now=NOW.timestamp()),
    "intercom": lambda b: intercom.parse(req(b), account="acme"),
    "udesk": lambda b: udesk.parse_callback(req(b), account="acme"),
    "postmark": lambda b: webhooks.parse_postmark(req(b), account="acme", received_at=NOW),
}


def call(target: Callable[[bytes], object], body: bytes) -> None:
    with contextlib.suppress(*TYPED):
        target(body)


def seeds(folder: str) -> list[Any]:
    docs = []
    for path in sorted((FIXTURES / folder).glob("*.json")):
        if not path.name.endswith(".expected.json"):
            docs.append(json.loads(path.read_text()))
    return docs


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, docs: list[Any]) -> bytes:
    """A recorded document with a few subtrees replaced by arbitrary JSON."""
    doc = json.loads(json.dumps(draw(st.sampled_from(docs))))
    for _ in range(draw(st.integers(1, 3))):
        path: list[Any] = []
        node = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(
                st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
            )
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(json_values)
    return json.dumps(doc).encode()


SEEDS = {
    "telegram": "telegram",
    "whatsapp": "whatsapp",
    "messenger": "messenger",
    "line": "line",
    "zendesk": "zendesk",
    "intercom": "intercom",
    "postmark": "email_webhooks",
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(body=st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_typed_errors(name: str, body: bytes) -> None:
    call(PARSERS[name], body)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(doc=json_values)
def test_arbitrary_json_raises_only_typed_errors(name: str, doc: Any) -> None:
    call(PARSERS[name], json.dumps(doc).encode())


@pytest.mark.parametrize("name", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_fixtures_raise_only_typed_errors(name: str, data: st.DataObject) -> None:
    docs = seeds(SEEDS[name])
    assert docs, name
    call(PARSERS[name], data.draw(mutated(docs)))


def _udesk_seed() -> list[Any]:
    return [
        {
            "deskbridge": udesk.TRIGGER_SHAPE,
            "ticket_id": "1",
            "reply_id": "2",
            "content": "hi",
            "attachments": [],
        }
    ]


@FUZZ
@given(data=st.data())
def test_mutated_udesk_callbacks_raise_only_typed_errors(data: st.DataObject) -> None:
    call(PARSERS["udesk"], data.draw(mutated(_udesk_seed())))


EMAILS = sorted((FIXTURES / "email").glob("*.eml"))


@FUZZ
@given(body=st.binary(max_size=1024))
def test_mime_parser_takes_any_bytes(body: bytes) -> None:
    call(lambda b: mime.parse_mail(b, account="acme", received_at=NOW), body)


@FUZZ
@given(data=st.data())
def test_mime_parser_takes_damaged_mail(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(EMAILS)).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        raw[at : at + data.draw(st.integers(0, 16))] = data.draw(st.binary(max_size=16))
    call(lambda b: mime.parse_mail(b, account="acme", received_at=NOW), bytes(raw))


@pytest.mark.parametrize("name", ["mailgun_mime_multipart", "sendgrid_raw"])
@FUZZ
@given(data=st.data())
def test_email_form_webhooks_take_damaged_bodies(name: str, data: st.DataObject) -> None:
    raw = bytearray((FIXTURES / "email_webhooks" / f"{name}.body").read_bytes())
    boundary = raw.split(b"\r\n", 1)[0][2:].decode("latin-1")
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        raw[at : at + data.draw(st.integers(0, 16))] = data.draw(st.binary(max_size=16))
    request = req(bytes(raw), f"multipart/form-data; boundary={boundary}")
    parse = webhooks.parse_mailgun if name.startswith("mailgun") else webhooks.parse_sendgrid
    call(lambda _: parse(request, account="acme", received_at=NOW), b"")


SIP_SEED = (
    b"MESSAGE sip:support@acme.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:+16505550000@carrier.example>;tag=49583\r\n"
    b"To: <sip:support@acme.example>\r\nCall-ID: a84b4c76e66710\r\nCSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
)


@pytest.mark.parametrize("stream", [False, True])
@FUZZ
@given(data=st.data())
def test_sip_parser_takes_any_bytes(stream: bool, data: st.DataObject) -> None:
    raw = bytearray(SIP_SEED)
    if data.draw(st.booleans()):
        raw = bytearray(data.draw(st.binary(max_size=512)))
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        raw[at : at + data.draw(st.integers(0, 12))] = data.draw(st.binary(max_size=12))
    with contextlib.suppress(sip.SipParseError):
        sip.parse(bytes(raw), stream=stream)
