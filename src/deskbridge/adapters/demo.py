"""The demo account: what ``deskbridge run`` serves when there is no accounts file.

Sandbox desk, every registered channel in sandbox mode, each contributing its entry
(and its secrets group) through its spec's ``demo``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deskbridge.adapters.registry import CHANNELS
from deskbridge.adapters.spec import DemoContext
from deskbridge.config import AccountsFile, parse_accounts
from deskbridge.config.demo import DEMO_ACCOUNT, read_secrets, secrets_path, served_origins
from deskbridge.schemas import Desk

__all__ = ["demo_accounts", "demo_secrets"]


_DEMO_KB: dict[str, Any] = {
    "type": "knowledge_base",
    "threshold": 80,
    "entries": [
        {
            "language": "en",
            "questions": ["when are you open", "what are your opening hours"],
            "answer": "We are open Monday to Friday, 9:00 to 18:00 (Berlin time).",
        },
        {
            "language": "en",
            "questions": ["how do I return an item", "what is your returns policy"],
            "answer": "You can return anything within 30 days: reply with your order"
            " number and a colleague sends you the label.",
        },
        {
            "language": "es",
            "questions": ["cuándo abren", "cuál es el horario"],
            "answer": "Abrimos de lunes a viernes, de 9:00 a 18:00 (hora de Berlín).",
        },
        {
            "language": "de",
            "questions": ["wann habt ihr geöffnet", "öffnungszeiten"],
            "answer": "Wir sind Montag bis Freitag von 9 bis 18 Uhr für Sie da.",
        },
    ],
}


def _makers() -> dict[str, Callable[[], Any]]:
    """What each entry of the demo secrets file is made by; channels of one platform
    share a group, made once."""
    makers: dict[str, Callable[[], Any]] = {
        # 256 random bits, base64url: the format DESKBRIDGE_ENCRYPTION_KEY takes
        "encryption_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
    }
    for spec in CHANNELS.values():
        demo = spec.demo
        if demo.secrets_group is not None and demo.secrets is not None:
            makers.setdefault(demo.secrets_group, demo.secrets)
        for group, make in demo.more_secrets.items():
            makers.setdefault(group, make)
    # the admin API's HS256 key: `deskbridge token create` reads it from this file
    makers["admin_jwt_secret"] = lambda: secrets.token_urlsafe(32)
    return makers


def demo_secrets(data_dir: Path, *, create: bool = True) -> dict[str, Any]:
    """The demo secrets, generated on first use. Channels added later get theirs filled
    in. Raises ``ConfigError`` when the file is unreadable, or missing and not ``create``."""
    return read_secrets(data_dir, _makers(), create=create)


def demo_accounts(
    data_dir: Path,
    *,
    smtp_listen: str = "127.0.0.1:2525",
    sip_listen: str = "127.0.0.1:5060",
    web_origins: tuple[str, ...] = served_origins("127.0.0.1", 8080),
    write: bool = True,
    sms_provider: str = "twilio",
) -> AccountsFile:
    """The demo accounts file, its secrets read (or generated) in ``data_dir``. With
    ``write`` false nothing is written: secrets missing there are made up in memory (for
    commands that read the account's settings, never its secrets). ``web_origins``: the
    origins of the gateway's own pages (the widget's demo page opens its socket).
    ``sms_provider``: which provider's sandbox the SMS channel stands for
    (``DESKBRIDGE_DEMO_SMS_PROVIDER``)."""
    if write or secrets_path(data_dir).exists():
        stored = demo_secrets(data_dir, create=write)
    else:
        stored = {name: make() for name, make in _makers().items()}
    ctx = DemoContext(
        stored,
        smtp_listen=smtp_listen,
        sip_listen=sip_listen,
        web_origins=web_origins,
        providers={"sms": sms_provider},
    )
    apps: dict[str, Any] = {}
    for spec in CHANNELS.values():
        if spec.demo.apps is not None:
            apps.update(spec.demo.apps(ctx))
    doc = {
        "apps": apps,
        "accounts": {
            DEMO_ACCOUNT: {
                "desk": {"type": Desk.SANDBOX.value},
                # routing shows in the sandbox as a note on new tickets (docs/routing.md)
                "routing": {
                    "languages": ["en", "es", "de", "fr", "ja"],
                    "keywords": [
                        {"tag": "refund", "pattern": "refund|money back|reembolso|rembourse"},
                        {"tag": "urgent", "pattern": "urgent|asap|dringend|urgente"},
                    ],
                    "rules": [
                        {
                            "name": "refunds are high priority",
                            "when": {"tags": ["refund"]},
                            "then": {"priority": "high", "tags": ["billing"]},
                        }
                    ],
                },
                # a small knowledge base in front of the sandbox desk (docs/responders.md):
                # ask "When are you open?", then "I want a human" to see the hand-off
                "responders": {"max_bot_turns": 3, "chain": [_DEMO_KB]},
                # the sandbox's Solve button sends the survey on the next sweep (docs/csat.md)
                "csat": {"delay_minutes": 0, "period_days": 0},
                "channels": [spec.demo.entry(ctx) for spec in CHANNELS.values()],
            }
        },
    }
    return parse_accounts(json.dumps(doc), source="<demo account>")
