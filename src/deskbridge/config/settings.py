from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deskbridge.config.accounts import SmsProvider

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Process settings from the environment (``DESKBRIDGE_*``, plus ``REDIS_URL``)."""

    model_config = SettingsConfigDict(env_prefix="DESKBRIDGE_", extra="ignore")

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "DESKBRIDGE_REDIS_URL")
    )
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    data_dir: Path = Path(".deskbridge")
    encryption_key: SecretStr | None = None
    lookup_key: SecretStr | None = None
    keys_file: Path | None = None
    """Several encryption keys, one active (docs/security-keys.md); instead of
    ``encryption_key``."""
    region: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """The region this deployment serves (``eu``, ``us``, ``sg``): accounts of another
    region, or of none, are refused (docs/deployment.md)."""
    admin_jwt_secret: SecretStr | None = None
    """HS256 key of admin tokens (at least 32 bytes). Or, for RS256/ES256, a public key:"""
    admin_jwt_public_key: str | None = None
    """PEM text of the admin tokens' public key (RS256 or ES256)."""
    admin_jwt_public_key_path: Path | None = None
    admin_jwt_algorithm: Literal["HS256", "RS256", "ES256"] | None = None
    """Pinned; unset: HS256 for a secret, RS256 or ES256 after the public key's type."""
    admin_jwt_audience: str = "deskbridge-admin"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] | None = None
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop of ``run``, ``serve`` and ``worker``: ``auto`` takes uvloop where it
    is installed (a dependency on Linux and macOS), else asyncio's own."""
    """Log lines as JSON or plain text; unset: JSON unless stderr is a terminal."""
    sandbox_pages: bool | None = None
    """Serve the ``/sandbox/`` pages and sandbox channel API; unset: only when an account
    uses the sandbox desk (the pages) or a channel runs in sandbox mode (the API)."""
    console: bool | None = None
    """Serve the operator console at ``/console/`` (``DESKBRIDGE_CONSOLE``); unset: in
    the demo only (no accounts file)."""
    demo_smtp_port: int = Field(default=2525, ge=0, lt=65536)
    """Where the demo account's SMTP listener takes mail (127.0.0.1)."""
    failed_auth_burst: int = Field(default=30, ge=1)
    """Failed authentications one source may make at once before 429s (verified
    requests are never limited)."""
    failed_auth_per_minute: float = Field(default=30.0, gt=0)
    """How fast a source's failed-authentication budget refills."""
    channel_health_interval_seconds: float = Field(default=300.0, ge=0)
    """How often the worker asks the platforms about each channel (0: never)."""
    coalesce_max_messages: int = Field(default=20, ge=1, le=200)
    """When a desk's per-ticket update budget cannot keep up with a conversation, up to
    this many waiting messages are filed as one update."""
    recycle_after_seconds: float = Field(default=180 * 86400, ge=0)
    """A known number silent this long, seen again with a new identity of a channel its
    contact already has (a new WhatsApp account), is taken as possibly reassigned: a
    merge suggestion, not a merge. 0 turns the check off."""
    demo_sip_port: int = Field(default=5060, ge=0, lt=65536)
    """Where the demo account's SIP listener takes MESSAGEs and calls (127.0.0.1, UDP
    and TCP)."""
    demo_sms_provider: SmsProvider = "twilio"
    """Which provider's sandbox the demo account's SMS channel stands for (``vonage``:
    Vonage's JWT-signed JSON webhooks and Messages API instead of Twilio's)."""

    # delivery policy
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_cap_seconds: float = Field(default=3600.0, gt=0)
    max_rate_limit_wait_seconds: float = Field(default=3600.0, gt=0)
    max_rate_limited_seconds: float = Field(default=86400.0, gt=0)
    """The most a delivery waits on rate limits (429) in total, across its attempts: such
    waits spend no retry budget, so past this the delivery is a dead letter instead."""

    # worker
    poll_delay_seconds: float = Field(default=0.01, gt=0)
    job_timeout_seconds: float = Field(default=30.0, gt=0)
    job_grace_seconds: float = Field(default=15.0, gt=0)
    """Time past ``job_timeout_seconds`` to record an attempt and hand the lane on: arq's
    job timeout and the lane lock last the sum, and a killed worker's job runs again
    about 10 s after that (arq's in-progress mark)."""
    max_jobs: int = Field(default=50, ge=1)
    shutdown_drain_seconds: float = Field(default=0.0, ge=0)
    """After SIGTERM, how long a gateway keeps serving with ``/readyz`` at 503, so load
    balancers stop sending before the port closes (5-10 s behind Kubernetes)."""
    shutdown_timeout_seconds: float | None = Field(default=None, gt=0)
    """Then how long requests in flight (gateway) and running jobs (worker) get to
    finish; unset: 20 s for requests, a job's own deadline (``job_timeout_seconds +
    job_grace_seconds``) for jobs, so none is cut off. A request still running then is
    cut off unanswered (the platform sends it again); a job goes back to the queue to
    run again on another worker (a comment whose desk call was cut may be filed twice)."""
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    sweep_grace_seconds: float = Field(default=30.0, ge=0)

    # intake
    dedup_ttl_seconds: int = Field(default=7 * 86400, ge=60)
    raw_retention_seconds: int = Field(default=30 * 86400, ge=60)
    delivered_retention_seconds: int = Field(default=90 * 86400, ge=60)
    appendfsync: Literal["everysec", "always", "no"] = "everysec"
    """For the private redis-server of ``run``; set it in redis.conf for your own Redis."""
    wait_replicas: int = Field(default=0, ge=0)
    """Acknowledge a webhook only once this many replicas hold it (Redis ``WAIT``)."""
    wait_timeout_ms: int = Field(default=1000, ge=1)

    # outbound HTTP
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    # admin tokens
    admin_jwt_max_ttl: int = Field(default=30 * 86400, ge=60)
    """Seconds: an admin token whose ``exp - iat`` is longer is refused, whatever its
    signature (``DESKBRIDGE_ADMIN_JWT_MAX_TTL``)."""
    # exposure and slow clients (docs/security.md)
    metrics_address: str | None = Field(default=None, pattern=r"^\[?[^\s\]]*\]?:\d{1,5}$")
    """``host:port`` of a second listener that serves only ``/metrics``; the main listener
    then has none. Unset: ``/metrics`` on the main listener, for loopback callers only in
    production mode (an accounts file is set), for anyone in the demo."""
    metrics_token: SecretStr | None = None
    """When set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (wherever it
    is served, loopback too)."""
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A request's line and headers must arrive within this long of its first byte (or of
    the connection's start)."""
    http_keepalive_seconds: float = Field(default=15.0, gt=0)
    """An idle keep-alive connection is closed after this long."""
    http_body_timeout_seconds: float = Field(default=10.0, gt=0)
    """The body-read allowance of every request, plus the route's body limit over
    ``http_body_min_bytes_per_second``: a slower body gets a 408 and the connection closed."""
    http_body_min_bytes_per_second: int = Field(default=64 * 1024, ge=1024)
    http_max_connections_per_source: int = Field(default=64, ge=1)
    """Open HTTP connections one source address may hold; past it new ones are closed."""
    smtp_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    """Between SMTP commands."""
    smtp_data_timeout_seconds: float = Field(default=300.0, gt=0)
    """From DATA to the final dot."""
    smtp_session_timeout_seconds: float = Field(default=900.0, gt=0)
    """A whole SMTP session, however busy."""
    smtp_max_connections_per_source: int = Field(default=16, ge=1)
    sip_idle_timeout_seconds: float = Field(default=300.0, gt=0)
    """A SIP TCP/TLS connection with no complete message for this long is closed."""
    sip_message_timeout_seconds: float = Field(default=10.0, gt=0)
    """A SIP message over TCP/TLS must be complete within this long of its first byte."""
    sip_max_connections_per_source: int = Field(default=32, ge=1)

    def production(self) -> bool:
        """Production mode: an accounts file is configured (not the demo account)."""
        return self.config is not None

    def body_timeout(self, limit: int) -> float:
        """How long a body of at most ``limit`` bytes may take to arrive."""
        return self.http_body_timeout_seconds + limit / self.http_body_min_bytes_per_second

    def request_drain_seconds(self) -> float:
        """How long a stopping gateway waits for requests in flight."""
        return 20.0 if self.shutdown_timeout_seconds is None else self.shutdown_timeout_seconds

    def job_drain_seconds(self) -> float:
        """How long a stopping worker waits for its running jobs."""
        if self.shutdown_timeout_seconds is not None:
            return self.shutdown_timeout_seconds
        return self.job_timeout_seconds + self.job_grace_seconds

    def base_public_url(self) -> str:
        """How channels and desks reach this deployment (defaults to the listen address)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"
