"""WhatsApp, Messenger and Instagram corpus: webhook bodies from public SDK test suites
(tests/corpus/<channel>/SOURCES.md), each signed with the test app secret and read by the
app's receiver, against its expected outcome: the events filed (sender, thread, text,
attachments, note...), the statuses, the named reasons for what is not filed, and the
items that failed (by account). Nothing may come out of a body unaccounted for.

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites expected.json from the current output; review
the diff like code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.instagram import InstagramReceiver
from deskbridge.adapters.messenger import MessengerReceiver
from deskbridge.adapters.meta import sign
from deskbridge.adapters.whatsapp import WhatsAppReceiver
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.errors import ParseFailed
from deskbridge.schemas import ChannelEvent, InboundEvent, Message, RawRequest, StatusUpdate

from .recorded import REGEN

CORPUS = Path(__file__).parent / "corpus"
APP_SECRET = "corpus-app-secret-0123456789abcdef"
APP = MetaAppConfig.model_validate({"app_secret": APP_SECRET, "verify_token": "corpus"})
_TEXT = 300


def _items(channel: str) -> list[str]:
    return sorted(p.name for p in (CORPUS / channel).glob("*.json") if p.name != "expected.json")


def _ids(channel: str) -> dict[str, str]:
    """Every number (WhatsApp) or Page (Messenger) the corpus writes to, routed to acme."""
    found: set[str] = set()
    for name in _items(channel):
        doc = json.loads((CORPUS / channel / name).read_bytes())
        for entry in doc.get("entry") or ():
            if channel in ("messenger", "instagram"):
                found.add(str(entry.get("id")))
                continue
            for change in entry.get("changes") or ():
                metadata = (change.get("value") or {}).get("metadata") or {}
                found.add(str(metadata.get("phone_number_id")))
    return dict.fromkeys(found, "acme")


def _routed_instagram() -> dict[str, str]:
    """Instagram's corpus writes to one account of ours and one of nobody here's."""
    return {k: v for k, v in _ids("instagram").items() if k != "17841400000000999"}


RECEIVERS = {
    "whatsapp": WhatsAppReceiver("meta", APP, _ids("whatsapp"), max_body_bytes=4 << 20),
    "messenger": MessengerReceiver("meta", APP, _ids("messenger"), max_body_bytes=4 << 20),
    "instagram": InstagramReceiver("meta", APP, _routed_instagram(), max_body_bytes=4 << 20),
}


def _event(event: InboundEvent) -> dict[str, Any]:
    if isinstance(event, ChannelEvent):
        return {"action": event.action, "thread": event.thread, "external_id": event.external_id}
    if isinstance(event, StatusUpdate):
        return {
            "status": event.status,
            "thread": event.thread,
            "external_id": event.external_id,
            "error_code": event.error_code,
        }
    assert isinstance(event, Message)
    location = event.location
    return {
        "message": event.external_id,
        "sender": event.sender.external_id,
        "display_name": event.sender.display_name,
        "identities": sorted(f"{i.kind}:{i.value}" for i in event.sender.identities),
        "thread": event.thread,
        "text": event.text[:_TEXT],
        "attachments": [f"{a.kind}:{a.ref}" for a in event.attachments],
        "note": event.note,
        "reply_to": event.reply_to,
        "edit_of": event.edit_of,
        "location": [location.latitude, location.longitude] if location else None,
        "contact_phone": event.contact.phone if event.contact else None,
    }


def outcome(channel: str, body: bytes) -> dict[str, Any]:
    req = RawRequest(
        method="POST",
        path=f"/webhooks/{channel}",
        headers={"content-type": "application/json", "x-hub-signature-256": sign(APP_SECRET, body)},
        body=body,
    )
    receiver = RECEIVERS[channel]
    receiver.verify(req)
    try:
        parsed = receiver.parse(req)
    except ParseFailed as exc:
        return {"parse_failed": str(exc)}
    result: dict[str, Any] = {"events": [_event(e) for e in parsed.events]}
    ignored = [*parsed.ignored, *(s.reason for s in parsed.skipped)]
    if ignored:
        result["ignored"] = ignored
    if parsed.failures:
        result["failures"] = [{"account": f.account, "error": f.error} for f in parsed.failures]
    if parsed.unrouted:
        result["unrouted"] = parsed.unrouted
    # invariant 10: what is acknowledged is filed, failed, or ignored by name
    assert len(result) > 1 or result["events"], "an item came out unaccounted for"
    return result


def _expected(channel: str) -> dict[str, Any]:
    path = CORPUS / channel / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


_CHANNELS = ("whatsapp", "messenger", "instagram")
_CASES = [(channel, name) for channel in _CHANNELS for name in _items(channel)]
_GOT: dict[str, dict[str, Any]] = {channel: {} for channel in _CHANNELS}
# Instagram's corpus is written after Meta's documented shapes (SOURCES.md): smaller
_MIN_ITEMS = {"whatsapp": 40, "messenger": 40, "instagram": 25}
_MIN_FILED = {"whatsapp": 20, "messenger": 20, "instagram": 15}


@pytest.mark.parametrize(("channel", "name"), _CASES, ids=[f"{c}/{n}" for c, n in _CASES])
def test_corpus_item(channel: str, name: str) -> None:
    got = outcome(channel, (CORPUS / channel / name).read_bytes())
    if REGEN:
        _GOT[channel][name] = got
        path = CORPUS / channel / "expected.json"
        merged = {**_expected(channel), **_GOT[channel]}
        path.write_text(
            json.dumps(dict(sorted(merged.items())), indent=1, ensure_ascii=False) + "\n"
        )
        return
    assert got == _expected(channel)[name]


@pytest.mark.parametrize("channel", _CHANNELS)
def test_the_corpus_is_wide_and_every_item_has_an_outcome(channel: str) -> None:
    expected = _expected(channel)
    assert sorted(expected) == _items(channel)
    assert len(expected) >= _MIN_ITEMS[channel]
    filed = [n for n, o in expected.items() if any("message" in e for e in o.get("events", ()))]
    assert len(filed) >= _MIN_FILED[channel]
