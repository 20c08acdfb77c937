"""The demo account: what ``deskbridge run`` serves when there is no accounts file.

Sandbox desk, every channel in sandbox mode. Its secrets (and, unless the environment
gives one, the encryption key) are generated once into ``demo-secrets.json`` in the data
directory, mode 0600; the path is printed, the secrets never are.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

from deskbridge.config.accounts import AccountsFile, parse_accounts
from deskbridge.errors import ConfigError

__all__ = [
    "DEMO_ACCOUNT",
    "DEMO_APP",
    "DEMO_EMAIL",
    "DEMO_LINE_CHANNEL_ID",
    "DEMO_PAGE_ID",
    "DEMO_PHONE_NUMBER_ID",
    "DEMO_SIP_DOMAIN",
    "DEMO_SIP_NUMBER",
    "demo_accounts",
    "demo_secrets",
    "secrets_path",
]

DEMO_ACCOUNT = "demo"
DEMO_APP = "demo-meta"
DEMO_PHONE_NUMBER_ID = "100000000000001"
DEMO_PAGE_ID = "100000000000002"
DEMO_LINE_CHANNEL_ID = "2000000001"
DEMO_EMAIL = "support@demo.deskbridge.test"
DEMO_SIP_NUMBER = "+14155550100"
"""The demo trunk's served number (a fictional 555-01xx number)."""
DEMO_SIP_DOMAIN = "demo.deskbridge.test"


def secrets_path(data_dir: Path) -> Path:
    return data_dir / "demo-secrets.json"


def _generate() -> dict[str, Any]:
    return {
        # 256 random bits, base64url: the format DESKBRIDGE_ENCRYPTION_KEY takes
        "encryption_key": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
        "telegram": {
            "bot_token": f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}",
            "secret_token": secrets.token_urlsafe(32),
        },
        "meta": {
            "app_secret": secrets.token_hex(16),
            "verify_token": secrets.token_urlsafe(24),
            "whatsapp_access_token": "EAA" + secrets.token_urlsafe(48),
            "page_access_token": "EAA" + secrets.token_urlsafe(48),
        },
        "line": {
            "channel_secret": secrets.token_hex(16),
            "access_token": secrets.token_urlsafe(64),
        },
        # the admin API's HS256 key: `deskbridge token create` reads it from this file
        "admin_jwt_secret": secrets.token_urlsafe(32),
    }


def demo_secrets(data_dir: Path, *, create: bool = True) -> dict[str, Any]:
    """The demo secrets, generated on first use. Channels added later get theirs filled in."""
    path = secrets_path(data_dir)
    if path.exists():
        try:
            stored: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: unreadable demo secrets ({exc}); delete it to start over"
            ) from exc
        fresh = _generate()
        missing = {k: v for k, v in fresh.items() if k not in stored}
        if not missing:
            return stored
        stored.update(missing)
    elif not create:
        raise ConfigError(f"{path} does not exist: start `deskbridge run` without a config first")
    else:
        stored = _generate()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(stored, f, indent=2)
    os.chmod(path, 0o600)
    return stored


def demo_accounts(
    data_dir: Path, *, smtp_listen: str = "127.0.0.1:2525", sip_listen: str = "127.0.0.1:5060"
) -> AccountsFile:
    s = demo_secrets(data_dir)
    meta = s["meta"]
    doc = {
        "apps": {
            DEMO_APP: {
                "type": "meta",
                "app_secret": meta["app_secret"],
                "verify_token": meta["verify_token"],
            }
        },
        "accounts": {
            DEMO_ACCOUNT: {
                "desk": {"type": "sandbox"},
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
                "channels": [
                    {
                        "type": "telegram",
                        "sandbox": True,
                        "bot_token": s["telegram"]["bot_token"],
                        "secret_token": s["telegram"]["secret_token"],
                    },
                    {
                        "type": "whatsapp",
                        "sandbox": True,
                        "app": DEMO_APP,
                        "phone_number_id": DEMO_PHONE_NUMBER_ID,
                        "access_token": meta["whatsapp_access_token"],
                        # every WhatsApp Business Account starts with this approved template
                        "template": {"name": "hello_world", "language": "en_US"},
                    },
                    {
                        "type": "messenger",
                        "sandbox": True,
                        "app": DEMO_APP,
                        "page_id": DEMO_PAGE_ID,
                        "page_access_token": meta["page_access_token"],
                    },
                    {
                        "type": "line",
                        "sandbox": True,
                        "channel_id": DEMO_LINE_CHANNEL_ID,
                        "channel_secret": s["line"]["channel_secret"],
                        "access_token": s["line"]["access_token"],
                    },
                    {
                        "type": "email",
                        "sandbox": True,
                        "address": DEMO_EMAIL,
                        "inbound": "smtp",
                        "smtp_listen": smtp_listen,
                    },
                    {
                        "type": "sip",
                        "sandbox": True,
                        "listen": sip_listen,
                        "domains": ["127.0.0.1", "localhost", DEMO_SIP_DOMAIN],
                        "numbers": [DEMO_SIP_NUMBER],
                        # only this machine may send; P-Asserted-Identity is believed
                        "trusted_peers": ["127.0.0.0/8", "::1"],
                        "calls": {"action": "reject", "reject_status": 480},
                    },
                ],
            }
        },
    }
    return parse_accounts(json.dumps(doc), source="<demo account>")
