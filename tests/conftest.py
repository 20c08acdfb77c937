"""Shared fixtures: a real Redis on its own database number, flushed around each test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis


def _test_redis_url() -> str:
    """arq's key prefixes are global, so tests keep to a database of their own; under
    pytest-xdist each worker (gw0, gw1, ...) takes the next database number."""
    base = os.environ.get("DESKBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    if index == 0:
        return base
    parts = urlsplit(base)
    number = int(parts.path.strip("/") or 0) + index
    if number > 15:
        raise RuntimeError(f"xdist worker {worker} would need Redis database {number} (> 15)")
    return urlunsplit(parts._replace(path=f"/{number}"))


TEST_REDIS_URL = _test_redis_url()


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    # the processes' own client (store.connection.connect): commands multiplexed on one
    # connection, as in production
    from deskbridge.store.connection import connect

    client = connect(TEST_REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - the Makefile starts one
        pytest.fail(f"no Redis at {TEST_REDIS_URL}: {exc} (run the tests through `make test`)")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


# --- runtimes ---------------------------------------------------------------------------

import base64  # noqa: E402

import httpx  # noqa: E402

from deskbridge.config import Settings, parse_accounts  # noqa: E402
from deskbridge.flows import Runtime  # noqa: E402
from deskbridge.pipeline import build_worker  # noqa: E402
from deskbridge.store import Vault  # noqa: E402

TEST_KEY = base64.b64encode(bytes(range(32))).decode()
TG_TOKEN = "123456:TEST-token_abcdefghijklmnop"
TG_SECRET = "test-secret_token"
ZD_SECRET = "zendesk-signing-secret"

DEMO_YAML = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""

ZENDESK_YAML = f"""
accounts:
  acme:
    desk:
      type: zendesk
      base_url: https://acme.zendesk.test
      email: bot@acme.test
      api_token: zd-api-token
      webhook_secret: "{ZD_SECRET}"
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""


def test_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": TEST_REDIS_URL,
        "encryption_key": TEST_KEY,
        "poll_delay_seconds": 0.005,
        "retry_base_seconds": 0.01,
        "retry_cap_seconds": 0.05,
        "sweep_grace_seconds": 0,
        "job_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


_CLIENTS: dict[int, aioredis.Redis] = {}


def build_runtime(
    settings: Settings, accounts_yaml: str, vault: Vault, http: httpx.AsyncClient
) -> Runtime:
    """A runtime over its own client of the test database (see ``redis_of``)."""
    from deskbridge.store import connect

    client = connect(TEST_REDIS_URL)
    rt = Runtime.build(settings, parse_accounts(accounts_yaml), client, vault, http)
    _CLIENTS[id(rt)] = client
    return rt


def redis_of(rt: Runtime) -> aioredis.Redis:
    """The Redis client a test runtime's stores share: the runtime hands out none."""
    return _CLIENTS[id(rt)]


async def close_runtime(rt: Runtime) -> None:
    await rt.http.aclose()
    await _CLIENTS.pop(id(rt)).aclose()


@pytest.fixture
async def make_runtime(redis: aioredis.Redis) -> AsyncIterator[object]:
    """Build runtimes over the test database; closes their clients afterwards."""
    made: list[Runtime] = []

    def factory(
        yaml_text: str = DEMO_YAML, *, http_timeout: float = 5, **overrides: object
    ) -> Runtime:
        from deskbridge.store.crypto import decode_key

        rt = build_runtime(
            test_settings(**overrides),
            yaml_text,
            Vault.from_secret(decode_key(TEST_KEY)),
            httpx.AsyncClient(timeout=http_timeout),
        )
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        await close_runtime(rt)


async def drain(rt: Runtime) -> None:
    """Run a burst worker until the queue is empty (deferred retries included)."""
    worker = build_worker(rt, TEST_REDIS_URL, burst=True)
    try:
        await worker.main()
    finally:
        await worker.close()


META_SECRET = "meta-app-secret-for-tests"
META_VERIFY = "meta-verify-token"
WA_NUMBER = "200000000000002"
WA_OTHER = "200000000000003"
PAGE_ID = "300000000000001"

META_YAML = f"""
apps:
  meta:
    type: meta
    app_secret: "{META_SECRET}"
    verify_token: "{META_VERIFY}"
accounts:
  acme:
    desk:
      type: zendesk
      base_url: https://acme.zendesk.test
      email: bot@acme.test
      api_token: zd-api-token
      webhook_secret: "{ZD_SECRET}"
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_NUMBER}"
        access_token: wa-access-token
        base_url: https://graph.test
        template: {{name: hello_again, language: en_US}}
      - type: messenger
        app: meta
        page_id: "{PAGE_ID}"
        page_access_token: page-access-token
        base_url: https://graph.test
  globex:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_OTHER}"
        access_token: wa-other-token
        base_url: https://graph.test
"""


LINE_SECRET = "line-channel-secret-for-tests"

LINE_YAML = f"""
accounts:
  acme:
    desk:
      type: zendesk
      base_url: https://acme.zendesk.test
      email: bot@acme.test
      api_token: zd-api-token
      webhook_secret: "{ZD_SECRET}"
    channels:
      - type: line
        channel_id: "2000000001"
        channel_secret: "{LINE_SECRET}"
        access_token: line-access-token
        base_url: https://line.test
        data_base_url: https://line-data.test
"""


MAILGUN_KEY = "mailgun-signing-key-for-tests"

EMAIL_YAML = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: email
        address: support@acme.example
        inbound: mailgun
        mailgun_signing_key: "{MAILGUN_KEY}"
        sandbox: true
"""


# --- adapter tests: an HTTP client and respx ---------------------------------------------

import respx  # noqa: E402


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for an adapter under test; ``api`` answers its calls."""
    async with httpx.AsyncClient() as c:
        yield c


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """respx over every HTTP call of the test; a route need not be called."""
    with respx.mock(assert_all_called=False) as router:
        yield router


# --- no secrets or customer data in logs --------------------------------------------------

import logging  # noqa: E402

# Exact values the tests use that no log line may carry: every secret and token above,
# and distinctive customer data (bodies, numbers, emails) the tests send.
LOG_SENTINELS = (
    TEST_KEY,
    TG_TOKEN,
    TG_SECRET,
    ZD_SECRET,
    META_SECRET,
    LINE_SECRET,
    MAILGUN_KEY,
    "zd-api-token",
    "wa-access-token",
    "wa-other-token",
    "page-access-token",
    "line-access-token",
    "+16505551234",
    "16505551234",
    "ann@work.example",
    "someone@elsewhere.example",
    "Where is my parcel?",
    "Soy Ana, te escribo por SMS",
)


class _LeakCatcher(logging.Handler):
    """Keeps every log record of the run that carries a sentinel (logger and value only)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string is its test's problem, not a leak
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        for value in LOG_SENTINELS:
            if value in text:
                self.leaks.append((record.name, record.levelname, value))


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_logs() -> Iterator[_LeakCatcher]:
    """Captures the logs of the whole suite (INFO and up, as deployed) and fails at the
    end if any record carried a secret, a body, a phone number or an email of the tests."""
    catcher = _LeakCatcher()
    # as deployed: make_client quiets httpx (tests build plain clients), and the gateway's
    # own access logger writes route templates (tests' servers use aiohttp's default)
    for name in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    level = root.level
    root.addHandler(catcher)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    yield catcher
    root.removeHandler(catcher)
    root.setLevel(level)
    if catcher.leaks:
        seen = sorted(set(catcher.leaks))
        pytest.fail(f"log records carried test secrets or customer data: {seen[:20]}")


def self_signed_cert(
    tmp_path: Path, common_name: str, *, ip: str | None = None, stem: str = "server"
) -> tuple[str, str]:
    """A self-signed certificate and its key, written as PEM under ``tmp_path``
    (``<stem>.crt``, ``<stem>.key``). With ``ip``, it names that address and is its own
    authority, so a client can trust it through ``SSL_CERT_FILE``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
