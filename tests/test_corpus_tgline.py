"""Telegram and LINE corpus: webhook payloads from public SDK test suites
(tests/corpus/<channel>/SOURCES.md), each through the account's receiver as the gateway
takes it (LINE bodies signed with the test channel secret), against its expected outcome:
what was filed (events, sender, text as the agent reads it, attachments), what was
ignored and why, which items failed, or how the body was refused.

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites expected.json from the current output; review
the diff like code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.registry import CHANNELS
from deskbridge.errors import ParseFailed, PayloadInvalid
from deskbridge.outbound.render import render
from deskbridge.schemas import Channel, ChannelEvent, InboundEvent, Message, StatusUpdate

from . import test_line, test_telegram
from .recorded import REGEN

ROOT = Path(__file__).parent / "corpus"
_TEXT = 300


def _items(channel: str) -> list[str]:
    return sorted(p.name for p in (ROOT / channel).glob("*.json") if p.name != "expected.json")


ITEMS = [(ch, name) for ch in ("telegram", "line") for name in _items(ch)]


def _receiver(channel: str) -> Any:
    if channel == "line":
        adapter: Any = test_line.offline()
        config: Any = test_line.config()
    else:
        adapter, config = test_telegram.offline(), test_telegram.config()
    spec = CHANNELS[Channel(channel)]
    assert spec.receiver is not None
    return spec.receiver("acme", config, adapter)


_RECEIVERS = {ch: _receiver(ch) for ch in ("telegram", "line")}


def _event(ev: InboundEvent) -> dict[str, Any]:
    if isinstance(ev, Message):
        return {
            "kind": "message",
            "thread": ev.thread,
            "sender": ev.sender.external_id,
            "sender_name": ev.sender.display_name,
            "identities": sorted(f"{i.kind}:{i.value}" for i in ev.sender.identities),
            "edit_of": ev.edit_of,
            "reads": render(ev)[:_TEXT],
            "attachments": [
                {"kind": a.kind, "filename": a.filename, "mime_type": a.mime_type}
                for a in ev.attachments
            ],
        }
    if isinstance(ev, ChannelEvent):
        return {
            "kind": "channel_event",
            "thread": ev.thread,
            "action": ev.action,
            "external_id": ev.external_id,
        }
    assert isinstance(ev, StatusUpdate), ev
    return {"kind": "status", "status": ev.status}


def outcome(channel: str, body: bytes) -> dict[str, Any]:
    req = test_line.request(body) if channel == "line" else test_telegram.request(body)
    receiver = _RECEIVERS[channel]
    receiver.verify(req)
    try:
        parsed = receiver.parse(req)
    except PayloadInvalid:
        return {"outcome": "refused", "status": 400}
    except ParseFailed as exc:
        # kept raw as a parse_failed dead letter and acknowledged (re-ingestable)
        return {"outcome": "parse_failed", "error": str(exc)}
    result: dict[str, Any] = {"outcome": "filed" if parsed.events else "ignored"}
    if parsed.events:
        result["events"] = [_event(ev) for ev in parsed.events]
    if parsed.failures:
        result["failures"] = [f.error for f in parsed.failures]
        if not parsed.events:
            result["outcome"] = "failed"
    named = [*parsed.ignored, *(s.reason for s in parsed.skipped)]
    if named or not (parsed.events or parsed.failures):
        # the gateway counts an item read and not filed under "unhandled" unless named
        result["ignored"] = named or ["unhandled"]
    return result


def _expected(channel: str) -> dict[str, Any]:
    path = ROOT / channel / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("channel", ["telegram", "line"])
def test_every_item_has_an_expected_outcome_and_a_source(channel: str) -> None:
    names = _items(channel)
    if REGEN:
        got = {name: outcome(channel, (ROOT / channel / name).read_bytes()) for name in names}
        (ROOT / channel / "expected.json").write_text(
            json.dumps(got, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    assert sorted(_expected(channel)) == names
    sources = (ROOT / channel / "SOURCES.md").read_text()
    for prefix in {name.split("__")[0] for name in names}:
        assert f"`{prefix}__`" in sources


@pytest.mark.parametrize(("channel", "name"), ITEMS, ids=[f"{c}/{n}" for c, n in ITEMS])
def test_corpus_item(channel: str, name: str) -> None:
    assert outcome(channel, (ROOT / channel / name).read_bytes()) == _expected(channel)[name]


@pytest.mark.parametrize("channel", ["telegram", "line"])
def test_the_corpus_is_wide(channel: str) -> None:
    outcomes = [v["outcome"] for v in _expected(channel).values()]
    assert len(outcomes) >= 40
    assert {"filed", "ignored"} <= set(outcomes)
