"""The SMTP listener: mail for configured support addresses, stored before it is taken.

``250`` only after the intake script ran (``451`` when the store fails, so the sending MTA
retries); ``550`` for any recipient that is not a configured address or one of its plus
forms (never an open relay); ``552`` over the size limit (advertised with SIZE).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import defaultdict
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from deskbridge.adapters.email.mime import normalize_address
from deskbridge.adapters.email.receiver import EmailReceiver
from deskbridge.config import EmailConfig
from deskbridge.errors import DeskbridgeError, StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.flows.ingest import accept_events
from deskbridge.schemas import Channel, RawRequest

__all__ = ["start_smtp_listeners"]

log = logging.getLogger(__name__)
# aiosmtpd logs every envelope sender and recipient at INFO: customer emails
logging.getLogger("mail.log").setLevel(logging.WARNING)


class _Handler:
    """Routes each recipient to the account owning it; stores the mail once per account."""

    def __init__(self, rt: Runtime, receivers: dict[str, EmailReceiver]) -> None:
        self._rt = rt
        self._receivers = receivers

    def _owner(self, address: str) -> str | None:
        normalized = normalize_address(address)
        if normalized is None:
            return None
        return next((a for a, r in self._receivers.items() if r.accepts(normalized)), None)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._owner(address) is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        accounts = {a for r in envelope.rcpt_tos if (a := self._owner(r)) is not None}
        try:
            for account in sorted(accounts):
                await self._store(account, raw)
        except StoreUnavailable as exc:
            log.error("smtp intake failed: %s", exc)
            return "451 4.3.0 Temporarily unable to store the message, try again later"
        except DeskbridgeError as exc:
            log.warning("smtp: refused a message (%s)", type(exc).__name__)
            return "554 5.6.0 Message cannot be read"
        return "250 2.0.0 Stored"

    async def _store(self, account: str, raw: bytes) -> None:
        rt = self._rt
        req = RawRequest(method="SMTP", path=f"smtp:{account}", body=raw)
        events = self._receivers[account].parse(req)
        if not events:
            rt.metrics.event("email", "ignored", "")
            return
        await accept_events(rt, "email", req, events)


def _tls(configs: list[EmailConfig]) -> ssl.SSLContext | None:
    for c in configs:
        if c.tls_cert_path and c.tls_key_path:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(c.tls_cert_path, c.tls_key_path)
            return context
    return None


async def start_smtp_listeners(rt: Runtime) -> list[asyncio.Server]:
    """One listener per configured ``smtp_listen`` address of accounts with
    ``inbound: smtp``. The caller closes the returned servers."""
    by_listen: dict[str, dict[str, EmailConfig]] = defaultdict(dict)
    for name, acc in rt.accounts.accounts.items():
        ch = acc.channel(Channel.EMAIL)
        if isinstance(ch, EmailConfig) and ch.inbound == "smtp":
            by_listen[ch.smtp_listen][name] = ch
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()
    for listen, configs in by_listen.items():
        host, _, port = listen.rpartition(":")
        handler = _Handler(rt, {name: EmailReceiver(name, c) for name, c in configs.items()})
        limit = max(c.max_body_bytes for c in configs.values())
        tls = _tls(list(configs.values()))

        def factory(
            handler: Any = handler, limit: int = limit, tls: ssl.SSLContext | None = tls
        ) -> SMTP:
            return SMTP(
                handler,
                data_size_limit=limit,
                enable_SMTPUTF8=True,
                tls_context=tls,
                hostname="deskbridge",
            )

        try:
            servers.append(await loop.create_server(factory, host, int(port)))
        except OSError as exc:
            # the rest of deskbridge still serves; /readyz names the problem per account
            log.error("smtp listener on %s could not start: %s", listen, exc.strerror or exc)
            for name in configs:
                await rt.deliveries.report_problem(
                    name, "smtp listener", f"{listen}: {exc.strerror or exc}"
                )
            continue
        log.info("smtp listener on %s for %d account(s)", listen, len(configs))
    return servers
