"""The SMTP listener: mail for configured support addresses, stored before it is taken.

``250`` only after the intake script ran (``451`` when the store fails, so the sending MTA
retries); ``550`` for any recipient that is not a configured address or one of its plus
forms (never an open relay), except ``postmaster`` (RFC 5321 §4.5.1: it MUST be accepted;
its mail goes to the first account of the listener); ``552`` over the size limit
(advertised with SIZE). Lines longer than RFC 5321's 1,000 octets are taken as
mainstream MTAs take them (they wrap them; we keep them whole): only the size limit
bounds a mail.

A mail for several accounts is stored for each; once any of them has it, the answer is
never a 5xx: the others are stored too, or the whole mail is answered 451 and sent again
(each account's copy is deduplicated by its Message-ID, so a retry files nothing twice).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from deskbridge.adapters.email.mime import normalize_address
from deskbridge.adapters.email.receiver import EmailReceiver
from deskbridge.config import EmailConfig
from deskbridge.errors import DeskbridgeError, StoreUnavailable, bind_failed
from deskbridge.flows import Runtime
from deskbridge.flows.ingest import accept_events, record_ignored
from deskbridge.schemas import Channel, RawRequest

__all__ = ["SessionLimits", "start_smtp_listeners"]

# A line may be as long as the whole mail: some clients send a 4 KB header or an
# unwrapped base64 body, and aiosmtpd's own limit (1,001) answers them "500 Line too long"
_LINE_LIMIT_FLOOR = 1 << 20

log = logging.getLogger(__name__)
# aiosmtpd logs every envelope sender and recipient at INFO: customer emails
logging.getLogger("mail.log").setLevel(logging.WARNING)


class _Handler:
    """Routes each recipient to the account owning it; stores the mail once per account."""

    def __init__(self, rt: Runtime, receivers: dict[str, EmailReceiver]) -> None:
        self._rt = rt
        self._receivers = receivers

    def _owner(self, address: str) -> str | None:
        if address.strip().strip("<>").lower() == "postmaster":
            return min(self._receivers)  # RFC 5321: domainless postmaster is always ours
        normalized = normalize_address(address)
        if normalized is None:
            return None
        owner = next((a for a, r in self._receivers.items() if r.accepts(normalized)), None)
        if owner is None and normalized.partition("@")[0] == "postmaster":
            owner = next(
                (a for a, r in self._receivers.items() if r.serves_domain(normalized)), None
            )
        return owner

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._owner(address) is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        accounts = sorted({a for r in envelope.rcpt_tos if (a := self._owner(r)) is not None})
        stored = unavailable = refused = 0
        for account in accounts:
            try:
                await self._store(account, raw)
                stored += 1
            except StoreUnavailable as exc:
                log.error("smtp intake failed for account %s: %s", account, exc)
                unavailable += 1
            except DeskbridgeError as exc:
                log.warning("smtp: account %s refused a message (%s)", account, type(exc).__name__)
                refused += 1
        if unavailable:
            # the sender tries again; the accounts that have it deduplicate the copy
            return "451 4.3.0 Temporarily unable to store the message, try again later"
        if refused and not stored:
            return "554 5.6.0 Message cannot be read"
        return "250 2.0.0 Stored"

    async def _store(self, account: str, raw: bytes) -> None:
        rt = self._rt
        req = RawRequest(method="SMTP", path=f"smtp:{account}", body=raw)
        parsed = self._receivers[account].parse(req)
        # one mail is either filed or ignored: its raw copy is kept by one of the two
        await record_ignored(rt, "email", req, parsed, account=account)
        if not parsed.events:
            return
        await accept_events(rt, "email", req, parsed.events)


@dataclass(frozen=True)
class SessionLimits:
    """Slow and greedy SMTP clients (docs/security.md): ``idle`` between commands (aiosmtpd's
    own timeout), ``data`` from DATA to the final dot, ``session`` for the whole
    connection, and at most ``per_source`` connections from one address."""

    idle: float = 60.0
    data: float = 300.0
    session: float = 900.0
    per_source: int = 16


class _LongLinesSMTP(SMTP):
    """aiosmtpd's server with its line limit raised to the size limit (at least 1 MiB),
    and the session limits."""

    def __init__(
        self,
        handler: Any,
        *,
        data_size_limit: int,
        limits: SessionLimits,
        open_per_source: Counter[str],
        **kwargs: Any,
    ) -> None:
        # aiosmtpd reads the class attribute when it builds its stream reader
        self.line_length_limit = max(_LINE_LIMIT_FLOOR, data_size_limit + 2)
        super().__init__(handler, data_size_limit=data_size_limit, timeout=limits.idle, **kwargs)
        self._limits = limits
        self._open = open_per_source
        self._source: str | None = None
        self._session_end: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        super().connection_made(transport)
        if self._open[source] >= self._limits.per_source:
            log.warning("smtp: too many connections from one source, closing a new one")
            transport.close()
            return
        self._open[source] += 1
        self._source = source
        self._session_end = self.loop.call_later(self._limits.session, self._too_long)

    def _too_long(self) -> None:
        log.info("smtp: closing a session past its total time")
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._session_end is not None:
            self._session_end.cancel()
        if self._source is not None:
            self._open[self._source] -= 1
            if self._open[self._source] <= 0:
                del self._open[self._source]
            self._source = None
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's idle timer runs from the last command (DATA) to the final dot: give
        # the mail its own allowance, then the idle one again
        self._reset_timeout(self._limits.data)
        await super().smtp_DATA(arg)
        if self.transport is not None:
            self._reset_timeout()


def _tls(configs: list[EmailConfig]) -> ssl.SSLContext | None:
    for c in configs:
        if c.tls_cert_path and c.tls_key_path:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(c.tls_cert_path, c.tls_key_path)
            return context
    return None


async def start_smtp_listeners(
    rt: Runtime, limits: SessionLimits | None = None
) -> list[asyncio.Server]:
    """One listener per configured ``smtp_listen`` address of accounts with
    ``inbound: smtp``. The caller closes the returned servers. Raises ``ConfigError``
    naming the address when one cannot bind (the ones already open are closed)."""
    by_listen: dict[str, dict[str, EmailConfig]] = defaultdict(dict)
    for name, acc in rt.accounts.accounts.items():
        ch = acc.channel(Channel.EMAIL)
        if isinstance(ch, EmailConfig) and ch.inbound == "smtp":
            by_listen[ch.smtp_listen][name] = ch
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()
    s = rt.settings
    limits = limits or SessionLimits(
        idle=s.smtp_idle_timeout_seconds,
        data=s.smtp_data_timeout_seconds,
        session=s.smtp_session_timeout_seconds,
        per_source=s.smtp_max_connections_per_source,
    )
    for listen, configs in by_listen.items():
        host, _, port = listen.rpartition(":")
        handler = _Handler(rt, {name: EmailReceiver(name, c) for name, c in configs.items()})
        limit = max(c.max_body_bytes for c in configs.values())
        tls = _tls(list(configs.values()))
        opened: Counter[str] = Counter()  # connections per source, on this listener

        def factory(
            handler: Any = handler,
            limit: int = limit,
            tls: ssl.SSLContext | None = tls,
            open_per_source: Counter[str] = opened,
        ) -> SMTP:
            return _LongLinesSMTP(
                handler,
                data_size_limit=limit,
                limits=limits,
                open_per_source=open_per_source,
                enable_SMTPUTF8=True,
                tls_context=tls,
                hostname="deskbridge",
            )

        try:
            servers.append(await loop.create_server(factory, host, int(port)))
        except OSError as exc:
            for server in servers:
                server.close()
            raise bind_failed("smtp", listen, exc) from exc
        log.info("smtp listener on %s for %d account(s)", listen, len(configs))
    return servers
