"""The SIP listeners: every account with a ``sip`` channel, grouped by listen address.

Events are stored by the same intake script as webhooks (one round trip, dedup mark,
sealed raw request, delivery record, job) before any 200 is sent.
"""

from __future__ import annotations

import logging
import ssl
from collections import defaultdict

from deskbridge.adapters.sip import Listener, SipReceiver, SipService, start_listener
from deskbridge.adapters.sip.server import Store
from deskbridge.adapters.sip.transaction import Timers
from deskbridge.adapters.sip.transport import StreamLimits
from deskbridge.config import SipConfig
from deskbridge.errors import bind_failed
from deskbridge.flows import Runtime
from deskbridge.flows.ingest import accept_events
from deskbridge.schemas import CallEvent, Channel, Message, RawRequest

__all__ = ["start_sip_listeners"]

log = logging.getLogger(__name__)


def _tls(configs: list[SipConfig]) -> ssl.SSLContext | None:
    for c in configs:
        if c.tls_listen and c.tls_cert_path and c.tls_key_path:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(c.tls_cert_path, c.tls_key_path)
            return context
    return None


def make_store(rt: Runtime) -> Store:
    """The ``Store`` the SIP service calls: the intake script, as for webhooks."""

    async def store(account: str, raw: RawRequest, events: list[Message | CallEvent]) -> None:
        await accept_events(rt, "sip", raw, events)

    return store


async def start_sip_listeners(rt: Runtime) -> list[Listener]:
    """One listener (UDP + TCP on one port, TLS beside it) per distinct ``listen``.
    Accounts sharing an address are told apart by the Request-URI. The caller closes
    the returned listeners. Raises ``ConfigError`` naming the address when one cannot
    bind (the ones already open are closed)."""
    by_listen: dict[str, dict[str, SipConfig]] = defaultdict(dict)
    for name, acc in rt.accounts.accounts.items():
        ch = acc.channel(Channel.SIP)
        if isinstance(ch, SipConfig):
            by_listen[ch.listen][name] = ch
    listeners: list[Listener] = []
    for listen, configs in by_listen.items():
        first = next(iter(configs.values()))
        t = first.timers

        def count(outcome: str, reason: str) -> None:
            rt.metrics.event("sip", outcome, reason)

        service = SipService(
            [SipReceiver(name, c) for name, c in configs.items()],
            make_store(rt),
            timers=Timers(t.t1, t.t2, t.t4),
            count=count,
        )
        transports = sorted({tr for c in configs.values() for tr in c.transports})
        tls_listen = next((c.tls_listen for c in configs.values() if c.tls_listen), None)
        try:
            listener = await start_listener(
                service,
                listen,
                transports=transports,
                tls_listen=tls_listen,
                tls=_tls(list(configs.values())),
                limits=StreamLimits(
                    idle=rt.settings.sip_idle_timeout_seconds,
                    message=rt.settings.sip_message_timeout_seconds,
                    per_source=rt.settings.sip_max_connections_per_source,
                ),
            )
        except OSError as exc:
            for opened in listeners:
                await opened.close()
            raise bind_failed("sip", listen, exc) from exc
        for name in configs:
            # what an older version recorded when this port was busy
            await rt.deliveries.clear_problem(name, "sip listener")
        log.info(
            "sip listener on %s (%s) for %d account(s)",
            listen,
            ", ".join(sorted(listener.addresses())),
            len(configs),
        )
        listeners.append(listener)
    return listeners
