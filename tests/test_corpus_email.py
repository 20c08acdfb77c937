"""Email corpus: real-world mails from public test suites (tests/corpus/email/SOURCES.md),
each through the account's receiver as the SMTP listener takes it, against its expected
outcome: filed (sender, subject, text, attachments, the ticket subject), ignored (the
named reason), a status of one of our replies (a bounce), or refused (the SMTP answer).

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites expected.json from the current output; review
the diff like code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.email.mime import UNKNOWN_SENDER, part_content
from deskbridge.adapters.email.receiver import WHOLE_MAIL, EmailReceiver
from deskbridge.config import EmailConfig
from deskbridge.errors import PayloadInvalid
from deskbridge.outbound.render import subject
from deskbridge.schemas import Message, RawRequest, StatusUpdate

from .recorded import REGEN

CORPUS = Path(__file__).parent / "corpus" / "email"
EXPECTED = CORPUS / "expected.json"
ITEMS = sorted(p.name for p in CORPUS.glob("*.eml"))
RECEIVED = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
CONFIG = EmailConfig(address="support@support.example", inbound="smtp", sandbox=True)
_TEXT = 300


def _receiver() -> EmailReceiver:
    return EmailReceiver("acme", CONFIG, clock=RECEIVED.timestamp)


def _filed(msg: Message, raw: bytes) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    for a in msg.attachments:
        if a.ref == WHOLE_MAIL:
            files.append({"filename": a.filename, "whole_mail": True})
            continue
        # every attachment named must be readable back from the stored mail
        found = part_content(raw, a.ref)
        assert found is not None, a.ref
        assert len(found[0]) == a.size
        files.append({"filename": a.filename, "mime_type": a.mime_type, "size": a.size})
    sender = msg.sender.external_id
    return {
        "outcome": "filed",
        "sender": "unknown" if sender.startswith(f"{UNKNOWN_SENDER}:") else sender,
        "display_name": msg.sender.display_name,
        "subject": msg.thread_title,
        "ticket_subject": subject(msg),
        "text": msg.text[:_TEXT],
        "attachments": files,
    }


def outcome(raw: bytes) -> dict[str, Any]:
    req = RawRequest(method="SMTP", path="smtp:acme", body=raw)
    try:
        parsed = _receiver().parse(req)
    except PayloadInvalid:
        return {"outcome": "refused", "smtp": 554}
    if not parsed.events:
        assert parsed.ignored, "an ignored mail must name its reason"
        return {"outcome": "ignored", "reason": list(parsed.ignored)}
    assert len(parsed.events) == 1
    event = parsed.events[0]
    if isinstance(event, StatusUpdate):
        return {"outcome": "status", "status": event.status, "thread": event.thread}
    assert isinstance(event, Message)
    return _filed(event, raw)


def _expected() -> dict[str, Any]:
    return json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}


def test_every_item_has_an_expected_outcome_and_a_source() -> None:
    sources = (CORPUS / "SOURCES.md").read_text()
    if REGEN:
        got = {name: outcome((CORPUS / name).read_bytes()) for name in ITEMS}
        EXPECTED.write_text(json.dumps(got, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    assert sorted(_expected()) == ITEMS
    for prefix in {name.split("__")[0] for name in ITEMS}:
        assert f"`{prefix}__`" in sources


@pytest.mark.parametrize("name", ITEMS)
def test_corpus_item(name: str) -> None:
    assert outcome((CORPUS / name).read_bytes()) == _expected()[name]


def test_the_corpus_is_wide() -> None:
    outcomes = [v["outcome"] for v in _expected().values()]
    assert len(outcomes) >= 100
    assert {"filed", "ignored", "status", "refused"} <= set(outcomes)
