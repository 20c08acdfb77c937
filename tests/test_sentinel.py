"""``REDIS_URL`` with Redis Sentinel: parsing, clear startup errors, the pool and arq's
pool following the Sentinels, ``/readyz`` naming the primary, and the worker's loops
honouring a cancel that redis-py swallowed.

The Sentinel tests run real ``redis-server`` and ``redis-sentinel`` processes on free
loopback ports (``tests/faults/sentinel.py``); the failover itself is
``tests/faults/test_failover.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deskbridge.errors import ConfigError, StoreUnavailable
from deskbridge.gateway import create_app
from deskbridge.gateway.state import STOPPING
from deskbridge.pipeline import worker as worker_module
from deskbridge.pipeline.worker import build_worker
from deskbridge.store import check_policy, connect
from deskbridge.store.connection import arq_pool, disconnect, honour_cancel, parse_url, primary

from .conftest import TEST_REDIS_URL
from .faults.sentinel import MASTER, SentinelCluster

SECRET = "s3cret-primary-pass"
SENTINEL_SECRET = "s3cret-sentinel-pass"


# -- parsing --------------------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_master_db_and_credentials() -> None:
    t = parse_url(
        f"redis+sentinel://app:{SECRET}@s1:26380,s2,[::1]:26381/cell-eu/3"
        f"?sentinel_password={SENTINEL_SECRET}&sentinel_username=watcher"
    )
    assert t.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (t.master, t.db, t.username, t.password) == ("cell-eu", 3, "app", SECRET)
    assert (t.sentinel_username, t.sentinel_password, t.tls) == ("watcher", SENTINEL_SECRET, False)
    assert str(t) == "redis+sentinel://s1:26380,s2:26379,::1:26381/cell-eu/3"
    assert SECRET not in repr(t) and SENTINEL_SECRET not in repr(t)
    plain = parse_url("redis+sentinel://:pw%40x@h/m")
    assert (plain.username, plain.password, plain.db) == (None, "pw@x", 0)


def test_rediss_sentinel_takes_tls_options_for_sentinels_and_primary() -> None:
    t = parse_url("rediss+sentinel://h:26379/m/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required")
    assert t.tls and dict(t.ssl) == {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": "required"}
    assert str(t).startswith("rediss+sentinel://")


async def test_tls_reaches_both_the_sentinels_and_the_primary() -> None:
    from redis.asyncio.connection import SSLConnection
    from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

    url = (
        f"rediss+sentinel://:{SECRET}@s1,s2/m/2?sentinel_password={SENTINEL_SECRET}"
        "&ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    )
    redis = connect(url)
    try:
        pool = redis.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.connection_class is SentinelManagedSSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert pool.connection_kwargs["password"] == SECRET
        for sentinel in pool.sentinel_manager.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            assert sentinel.connection_pool.connection_class is SSLConnection
            assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
            assert kwargs["password"] == SENTINEL_SECRET  # never the primary's
    finally:
        await disconnect(redis)


def test_direct_urls_are_left_to_redis_py() -> None:
    for url in ("redis://127.0.0.1:6379/2", "rediss://h:6380/0", "unix:///tmp/r.sock"):
        assert not parse_url(url).sentinel


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"sentinel://:{SECRET}@h/m", "scheme 'sentinel'"),
        (f"{SECRET}", "scheme '?'"),
        (f"redis+sentinel://:{SECRET}@/m/0", "no Sentinel host"),
        (f"redis+sentinel://:{SECRET}@h1,h2", "/MASTER or /MASTER/DB"),
        (f"redis+sentinel://:{SECRET}@h1/m/0/extra", "/MASTER or /MASTER/DB"),
        (f"redis+sentinel://:{SECRET}@h1/m/zero", "the database must be a number"),
        (f"redis+sentinel://:{SECRET}@h1:port/m", "Sentinel port 'port'"),
        (f"redis+sentinel://:{SECRET}@h1:70000/m", "Sentinel port '70000'"),
        (f"redis+sentinel://:{SECRET}@h1,,h2/m", "Sentinel address ''"),
        (
            f"redis+sentinel://:{SECRET}@h1/m?sentinel_pasword=x",
            "unknown option 'sentinel_pasword'",
        ),
        (f"redis+sentinel://:{SECRET}@h1/m?ssl_ca_certs=/ca", "need rediss+sentinel://"),
        (f"redis://:{SECRET}@h:port/0", "REDIS_URL is not valid"),
    ],
)
def test_a_malformed_url_is_one_clear_error_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        connect(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL is not valid") and says in message
    assert SECRET not in message and "\n" not in message


def _cli_env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBRIDGE_", "REDIS_URL"))}
    env.update(REDIS_URL=url, DESKBRIDGE_DATA_DIR=str(tmp_path / "data"), DESKBRIDGE_PORT="0")
    return env


def test_serve_and_keys_stop_at_a_malformed_url_with_one_line(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, f"redis+sentinel://:{SECRET}@h1:x/m")
    env["DESKBRIDGE_ENCRYPTION_KEY"] = "A" * 43 + "="
    for argv in (["serve"], ["keys", "status"]):
        res = subprocess.run(
            [sys.executable, "-m", "deskbridge", *argv],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        err = res.stderr.decode()
        assert res.returncode == 2, err
        assert err.strip().splitlines() == [
            "error: REDIS_URL is not valid: Sentinel port 'x' of 'h1'"
        ]


def test_worker_says_no_sentinel_answered(tmp_path: Path) -> None:
    from .faults.harness import free_port

    ports = [free_port(), free_port()]
    url = f"redis+sentinel://:{SECRET}@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/{MASTER}/0"
    res = subprocess.run(
        [sys.executable, "-m", "deskbridge", "worker"],
        env=_cli_env(tmp_path, url),
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = res.stderr.decode()
    assert res.returncode == 2, err
    where = f"127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}"
    assert err.strip().splitlines() == [
        f"error: Redis is not reachable: no Sentinel answered ({where})"
    ]


# -- against real Sentinels -----------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SentinelCluster]:
    c = SentinelCluster(tmp_path / "cluster", password=SECRET, sentinel_password=SENTINEL_SECRET)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


def _url(c: SentinelCluster, *, master: str = MASTER, sentinel_password: bool = True) -> str:
    hosts = ",".join(f"127.0.0.1:{p}" for p in c.sentinel_ports)
    query = f"?sentinel_password={SENTINEL_SECRET}" if sentinel_password else ""
    return f"redis+sentinel://:{SECRET}@{hosts}/{master}/1{query}"


@pytest.mark.timeout(120)
async def test_the_pool_and_arqs_pool_reach_the_primary_the_sentinels_name(
    cluster: SentinelCluster, make_runtime
) -> None:
    redis = connect(_url(cluster))
    try:
        await check_policy(redis)
        await redis.set("k", b"v")
        assert await redis.get("k") == b"v"
        assert (await redis.info("replication"))["role"] == "master"
        port = cluster.ports[await cluster.primary()]
        assert primary(redis) == f"127.0.0.1:{port} (Sentinel primary {MASTER!r})"
        pool = arq_pool(_url(cluster))
        assert pool is not None
        job = await pool.enqueue_job("deliver_to_desk", "acme", "d1", _job_id="j1")
        assert job is not None and await redis.zcard("arq:queue") == 1
        await pool.aclose()
        # the worker takes the same Sentinels: a pool of its own, no RedisSettings
        worker = build_worker(make_runtime(), _url(cluster))
        assert worker.redis_settings is None and worker.pool is not None
        await worker.pool.aclose()
    finally:
        await disconnect(redis)


@pytest.mark.timeout(120)
async def test_wrong_master_name_or_sentinel_password_is_named_at_start(
    cluster: SentinelCluster,
) -> None:
    wrong = connect(_url(cluster, master="no-such-cell"))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await check_policy(wrong)
        assert str(caught.value) == (
            "Redis is not reachable: 3 of 3 Sentinels answered; "
            "none knows a primary named 'no-such-cell'"
        )
    finally:
        await disconnect(wrong)
    # a wrong password of the primary: the Sentinels name it, it refuses
    refused = connect(_url(cluster).replace(SECRET, "not-the-password"))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await check_policy(refused)
        port = cluster.ports[await cluster.primary()]
        assert str(caught.value) == (
            f"Redis is not reachable: 3 of 3 Sentinels answered; the primary {MASTER!r} "
            f"at 127.0.0.1:{port} failed: AuthenticationError"
        )
    finally:
        await disconnect(refused)
    # the Sentinels require their own password: without it none answers
    locked = connect(_url(cluster, sentinel_password=False))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await check_policy(locked)
        assert SECRET not in str(caught.value)
    finally:
        await disconnect(locked)


# -- readiness --------------------------------------------------------------------------------


async def test_readyz_turns_503_when_stopping_and_the_detail_names_the_primary(
    make_runtime, aiohttp_client
) -> None:
    from deskbridge.gateway.admin import mint

    secret = "admin-secret-for-tests-0123456789abcdef"
    app = create_app(make_runtime(admin_jwt_secret=secret), role="serve")
    client = await aiohttp_client(app)
    ops = mint(
        secret,
        algorithm="HS256",
        subject="ops@test",
        scopes=["ops:read"],
        ttl_seconds=600,
        audience="deskbridge-admin",
    )
    auth = {"Authorization": f"Bearer {ops}"}
    detail = await (await client.get("/admin/v1/health", headers=auth)).json()
    parts = urlsplit(TEST_REDIS_URL)
    assert detail["redis_primary"] == f"{parts.hostname}:{parts.port}"
    assert (await client.get("/readyz")).status == 200
    app[STOPPING].set()
    stopping = await client.get("/readyz")
    assert stopping.status == 503
    assert await stopping.json() == {"status": "not ready", "region": None}
    detail = await (await client.get("/admin/v1/health", headers=auth)).json()
    assert detail["status"] == "not ready" and detail["checks"]["process"] == "stopping"
    assert (await client.get("/healthz")).status == 200


# -- cancels redis-py swallows ------------------------------------------------------------------


async def test_honour_cancel_raises_only_for_a_task_asked_to_stop() -> None:
    honour_cancel()  # not cancelled: nothing happens

    async def swallowed() -> None:
        # what Python 3.11's wait_for does when its inner call has just finished
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        honour_cancel()

    task = asyncio.create_task(swallowed())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.timeout(120)
async def test_the_workers_background_loop_ends_on_every_cancel(make_runtime) -> None:
    """Cancelled at random points of its Redis calls (a fresh pool each time, so the first
    call connects), the loop always ends: before the fix about a third of these cancels
    were swallowed and the loop ran on, keeping a stopping worker alive."""
    rng = random.Random(20)
    survived = 0
    for _ in range(40):
        rt = make_runtime()
        task = asyncio.create_task(worker_module._background(rt))
        await asyncio.sleep(rng.uniform(0, 0.004))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:
            survived += 1
            task.cancel()
            await asyncio.wait([task], timeout=5)
    assert survived == 0
