"""SMS corpus, for each provider behind the channel (tests/corpus/sms/SOURCES.md): Twilio
webhook forms (``corpus/sms/*.form``, signed with the test auth token over the test URL)
and Vonage Messages API webhooks (``corpus/sms/vonage/*.json``, signed with a JWT of
the test signature secret), each read by the account's receiver, against its expected
outcome: messages (sender, thread, text, media, note), consent changes, statuses, named
reasons for what is not filed, and parse failures. Nothing may come out of a body
unaccounted for.

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites expected.json from the current output; review
the diff like code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from deskbridge.adapters.base import Receiver
from deskbridge.adapters.sms import SmsReceiver, vonage
from deskbridge.adapters.sms.signature import sign
from deskbridge.config.accounts import SmsConfig, VonageSmsConfig
from deskbridge.errors import ParseFailed
from deskbridge.schemas import ChannelEvent, InboundEvent, Message, RawRequest, StatusUpdate

from .helpers import rsa_private_key
from .recorded import REGEN

CORPUS = Path(__file__).parent / "corpus" / "sms"
TOKEN = "corpus-auth-token-0123456789abcdef"
URL = "https://bridge.example.com/webhooks/sms/acme"
CLOCK = 1767225600.0
TWILIO = SmsConfig.model_validate(
    {
        "account_sid": "AC" + "0123456789abcdef" * 2,
        "auth_token": TOKEN,
        "webhook_url": URL,
        "default_sender": "+14155550100",
    }
)
SIGNATURE_SECRET = "corpus-signature-secret-0123456789"
VONAGE = VonageSmsConfig.model_validate(
    {
        "provider": "vonage",
        "api_key": "c0rpu5",
        "api_secret": "corpus-api-secret",
        "signature_secret": SIGNATURE_SECRET,
        "application_id": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "private_key": rsa_private_key(),
        "webhook_url": URL,
        "default_sender": "+447400123456",
    }
)


def _twilio_request(body: bytes) -> RawRequest:
    signature = sign(TOKEN, URL, parse_qsl(body.decode(), keep_blank_values=True))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
    }
    return RawRequest(method="POST", path="/webhooks/sms/acme", headers=headers, body=body)


def _vonage_request(body: bytes) -> RawRequest:
    token = vonage.sign(
        SIGNATURE_SECRET,
        body,
        api_key=VONAGE.api_key,
        application_id=VONAGE.application_id,
        issued_at=CLOCK,
    )
    headers = {"content-type": "application/json", "authorization": token}
    return RawRequest(method="POST", path="/webhooks/sms/acme", headers=headers, body=body)


@dataclass(frozen=True)
class Provider:
    folder: Path
    pattern: str
    receiver: Receiver
    request: Callable[[bytes], RawRequest]
    at_least: int
    filed_at_least: int


PROVIDERS = {
    "twilio": Provider(
        CORPUS,
        "*.form",
        SmsReceiver("acme", TWILIO, clock=lambda: CLOCK),
        _twilio_request,
        25,
        15,
    ),
    "vonage": Provider(
        CORPUS / "vonage",
        "*.json",
        vonage.VonageSmsReceiver("acme", VONAGE, clock=lambda: CLOCK),
        _vonage_request,
        30,
        15,
    ),
}


def _items(provider: str) -> list[str]:
    p = PROVIDERS[provider]
    return sorted(path.name for path in p.folder.glob(p.pattern) if path.name != "expected.json")


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


def outcome(provider: str, body: bytes) -> dict[str, Any]:
    p = PROVIDERS[provider]
    req = p.request(body)
    p.receiver.verify(req)
    try:
        parsed = p.receiver.parse(req)
    except ParseFailed as exc:
        return {"parse_failed": str(exc)}
    result: dict[str, Any] = {"events": [_event(e) for e in parsed.events]}
    if parsed.ignored:
        result["ignored"] = list(parsed.ignored)
    assert len(result) > 1 or result["events"], "an item came out unaccounted for"
    return result


def _expected(provider: str) -> dict[str, Any]:
    path = PROVIDERS[provider].folder / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


_GOT: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize(
    ("provider", "name"), [(p, n) for p in PROVIDERS for n in _items(p)], ids=str
)
def test_corpus_item(provider: str, name: str) -> None:
    folder = PROVIDERS[provider].folder
    got = outcome(provider, (folder / name).read_bytes().rstrip(b"\n"))
    if REGEN:
        _GOT.setdefault(provider, {})[name] = got
        merged = {**_expected(provider), **_GOT[provider]}
        (folder / "expected.json").write_text(
            json.dumps(dict(sorted(merged.items())), indent=1, ensure_ascii=False) + "\n"
        )
        return
    assert got == _expected(provider)[name]


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_the_corpus_is_wide_and_every_item_has_an_outcome(provider: str) -> None:
    expected = _expected(provider)
    assert sorted(expected) == _items(provider)
    assert len(expected) >= PROVIDERS[provider].at_least
    filed = [n for n, o in expected.items() if any("message" in e for e in o.get("events", ()))]
    assert len(filed) >= PROVIDERS[provider].filed_at_least
