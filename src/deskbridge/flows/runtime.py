"""Everything a gateway or worker process holds: one HTTP client, the stores (over one
Redis pool, which the caller opens and closes), and the configured adapters and desks."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import httpx

from deskbridge.adapters import ChannelAdapter, Receiver
from deskbridge.adapters.registry import build_adapter, build_receivers
from deskbridge.config import AccountsFile, Settings
from deskbridge.metrics import Metrics
from deskbridge.outbound import DeskConnector, build_desk
from deskbridge.policy import RetryPolicy
from deskbridge.schemas import Channel
from deskbridge.store import ConversationStore, DeliveryStore, Intake, SandboxStore, Vault
from deskbridge.store.audit import AuditLog
from deskbridge.store.bot import BotStore
from deskbridge.store.connection import Connection
from deskbridge.store.csat import CsatStore, SurveyLinks
from deskbridge.store.enrichment import EnrichmentCache
from deskbridge.store.erasure import Erasure
from deskbridge.store.graph import IdentityGraph
from deskbridge.store.health import HealthStore
from deskbridge.store.listing import Listing
from deskbridge.store.media import MediaLinks
from deskbridge.store.revocations import Revocations
from deskbridge.store.service import ServiceStore
from deskbridge.store.sessions import ConsoleSessions
from deskbridge.store.tokens import RedisTokenCache
from deskbridge.store.udesk import RedisUdeskState
from deskbridge.store.webchat import WebchatStore

__all__ = ["Retention", "Runtime"]

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """An account's retention periods, in seconds (docs/privacy.md)."""

    raw_s: int
    delivered_s: int
    dead_s: int
    audit_s: int


def retention_of(settings: Settings, accounts: AccountsFile, account: str) -> Retention:
    """The account's ``retention:`` block; periods it leaves out come from the deployment's
    settings (``DESKBRIDGE_RAW_RETENTION_SECONDS``, ``..._DELIVERED_...``) or the defaults."""
    acc = accounts.accounts.get(account)
    if acc is None:
        return Retention(
            settings.raw_retention_seconds,
            settings.delivered_retention_seconds,
            180 * 86400,
            730 * 86400,
        )
    r = acc.retention
    given = r.model_fields_set
    return Retention(
        raw_s=r.raw_events_days * 86400
        if "raw_events_days" in given
        else settings.raw_retention_seconds,
        delivered_s=r.delivered_days * 86400
        if "delivered_days" in given
        else settings.delivered_retention_seconds,
        dead_s=r.dead_letters_days * 86400,
        audit_s=r.audit_days * 86400,
    )


@dataclass
class Runtime:
    """What a process's handlers and tasks share: settings, the stores (no Redis client:
    every read and write is a store method), the HTTP client, the adapters and desks."""

    settings: Settings
    accounts: AccountsFile
    vault: Vault
    http: httpx.AsyncClient
    policy: RetryPolicy
    intake: Intake
    deliveries: DeliveryStore
    conversations: ConversationStore
    sandbox: SandboxStore
    links: MediaLinks
    audit: AuditLog
    listing: Listing
    erasure: Erasure
    service: ServiceStore
    enrichment: EnrichmentCache
    health: HealthStore
    revocations: Revocations
    console: ConsoleSessions
    bot: BotStore
    csat: CsatStore
    survey_links: SurveyLinks
    webchat: WebchatStore
    metrics: Metrics = field(default_factory=Metrics)
    adapters: dict[tuple[str, Channel], ChannelAdapter] = field(default_factory=dict)
    receivers: dict[tuple[Channel, str | None], Receiver] = field(default_factory=dict)
    desks: dict[str, DeskConnector] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        settings: Settings,
        accounts: AccountsFile,
        connection: Connection,
        vault: Vault,
        http: httpx.AsyncClient,
    ) -> Runtime:
        """Every store over ``connection`` (the caller keeps it and closes it), the
        adapters and desks of ``accounts``."""
        policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base=settings.retry_base_seconds,
            cap=settings.retry_cap_seconds,
            max_rate_limit_wait=settings.max_rate_limit_wait_seconds,
            max_rate_limited=settings.max_rate_limited_seconds,
        )
        # A job key must outlive every retry; if one expires anyway the sweeper re-enqueues.
        job_expiry_ms = int(max(7 * _DAY, 2 * policy.horizon() + _DAY) * 1000)
        sandbox = SandboxStore(connection, vault)
        deliveries = DeliveryStore(connection, vault, job_expiry_ms=job_expiry_ms)
        rt = cls(
            settings=settings,
            accounts=accounts,
            vault=vault,
            http=http,
            policy=policy,
            intake=Intake(
                connection,
                vault,
                dedup_ttl=settings.dedup_ttl_seconds,
                raw_ttl=settings.raw_retention_seconds,
                raw_ttls={
                    name: retention_of(settings, accounts, name).raw_s for name in accounts.accounts
                },
                job_expiry_ms=job_expiry_ms,
                wait_replicas=settings.wait_replicas,
                wait_timeout_ms=settings.wait_timeout_ms,
            ),
            deliveries=deliveries,
            conversations=ConversationStore(
                connection,
                vault,
                IdentityGraph(connection, vault, recycle_seconds=settings.recycle_after_seconds),
                scopes=accounts.identity_scopes(),
            ),
            sandbox=sandbox,
            links=MediaLinks(vault, settings.base_public_url()),
            audit=AuditLog(connection),
            listing=Listing(connection, vault, deliveries),
            erasure=Erasure(connection, vault, deliveries),
            service=ServiceStore(connection),
            enrichment=EnrichmentCache(connection),
            health=HealthStore(connection),
            revocations=Revocations(connection),
            console=ConsoleSessions(connection),
            bot=BotStore(connection, vault),
            csat=CsatStore(connection, vault),
            survey_links=SurveyLinks(vault, settings.base_public_url()),
            webchat=WebchatStore(connection, vault),
        )
        public = settings.base_public_url()
        tokens = RedisTokenCache(connection, vault)
        udesk_state = RedisUdeskState(connection, vault)
        for name, account in accounts.accounts.items():
            rt.desks[name] = build_desk(
                name,
                account.desk,
                http,
                sandbox,
                tokens=tokens,
                udesk_state=udesk_state,
                metrics=rt.metrics,
            )
            for ch in account.channels:
                channel = Channel(ch.type)
                sandboxed = f"{public}/sandbox/channel-api/{name}/{channel.value}"
                rt.adapters[(name, channel)] = build_adapter(
                    name,
                    ch,
                    http,
                    rt.links,
                    tokens,
                    api_base=sandboxed if ch.sandbox else None,
                    mail_outbox=functools.partial(sandbox.record_mail, name),
                    outbox=functools.partial(sandbox.record_sent, name),
                    visitor_post=functools.partial(rt.webchat.post, name),
                    visitor_file=functools.partial(rt.webchat.upload, name),
                )
        rt.receivers = build_receivers(accounts, rt.adapters)
        return rt

    def receiver(self, channel: Channel | str, account: str | None) -> Receiver | None:
        """The receiver of ``/webhooks/{channel}[/{account}]``, None when not configured."""
        try:
            return self.receivers.get((Channel(channel), account))
        except ValueError:
            return None

    def adapter(self, account: str, channel: Channel | str) -> ChannelAdapter | None:
        try:
            return self.adapters.get((account, Channel(channel)))
        except ValueError:
            return None

    def retention(self, account: str) -> Retention:
        return retention_of(self.settings, self.accounts, account)

    def desk(self, account: str) -> DeskConnector | None:
        return self.desks.get(account)
