"""SMS corpus: Twilio webhook forms (tests/corpus/sms/SOURCES.md), each signed with the
test auth token over the test URL and read by the account's receiver, against its
expected outcome: messages (sender, thread, text, media, note), consent changes,
statuses, named reasons for what is not filed, and parse failures. Nothing may come out
of a body unaccounted for.

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites expected.json from the current output; review
the diff like code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from deskbridge.adapters.sms import SmsReceiver
from deskbridge.adapters.sms.signature import sign
from deskbridge.config.accounts import SmsConfig
from deskbridge.errors import ParseFailed
from deskbridge.schemas import ChannelEvent, InboundEvent, Message, RawRequest, StatusUpdate

from .recorded import REGEN

CORPUS = Path(__file__).parent / "corpus" / "sms"
TOKEN = "corpus-auth-token-0123456789abcdef"
URL = "https://bridge.example.com/webhooks/sms/acme"
CONFIG = SmsConfig.model_validate(
    {
        "account_sid": "AC" + "0123456789abcdef" * 2,
        "auth_token": TOKEN,
        "webhook_url": URL,
        "default_sender": "+14155550100",
    }
)
RECEIVER = SmsReceiver("acme", CONFIG, clock=lambda: 1767225600.0)


def _items() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.form"))


def _event(event: InboundEvent) -> dict[str, Any]:
    if isinstance(event, StatusUpdate):
        return {"status": event.status, "external_id": event.external_id, "error": event.error_code}
    if isinstance(event, ChannelEvent):
        return {"consent": event.action, "thread": event.thread}
    assert isinstance(event, Message)
    return {
        "message": event.external_id,
        "thread": event.thread,
        "identities": sorted(f"{i.kind}:{i.value}:{i.strength}" for i in event.sender.identities),
        "text": event.text,
        "attachments": [f"{a.kind}:{a.mime_type}" for a in event.attachments],
        "note": event.note,
        "context": event.context,
    }


def outcome(body: bytes) -> dict[str, Any]:
    signature = sign(TOKEN, URL, parse_qsl(body.decode(), keep_blank_values=True))
    req = RawRequest(
        method="POST",
        path="/webhooks/sms/acme",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        },
        body=body,
    )
    RECEIVER.verify(req)
    try:
        parsed = RECEIVER.parse(req)
    except ParseFailed as exc:
        return {"parse_failed": str(exc)}
    result: dict[str, Any] = {"events": [_event(e) for e in parsed.events]}
    if parsed.ignored:
        result["ignored"] = list(parsed.ignored)
    assert len(result) > 1 or result["events"], "an item came out unaccounted for"
    return result


def _expected() -> dict[str, Any]:
    path = CORPUS / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


_GOT: dict[str, Any] = {}


@pytest.mark.parametrize("name", _items())
def test_corpus_item(name: str) -> None:
    got = outcome((CORPUS / name).read_bytes().rstrip(b"\n"))
    if REGEN:
        _GOT[name] = got
        merged = {**_expected(), **_GOT}
        (CORPUS / "expected.json").write_text(
            json.dumps(dict(sorted(merged.items())), indent=1, ensure_ascii=False) + "\n"
        )
        return
    assert got == _expected()[name]


def test_the_corpus_is_wide_and_every_item_has_an_outcome() -> None:
    expected = _expected()
    assert sorted(expected) == _items()
    assert len(expected) >= 25
    filed = [n for n, o in expected.items() if any("message" in e for e in o.get("events", ()))]
    assert len(filed) >= 15
