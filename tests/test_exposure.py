"""What the world sees without a credential (docs/security.md, "Exposure"): ``/healthz``
and ``/readyz`` name no account; ``/metrics`` (per-account labels) is for loopback
callers in production mode, for its token's bearer, or on its own listen address."""

from __future__ import annotations

from pathlib import Path

from deskbridge.gateway import create_app
from deskbridge.gateway.app import create_metrics_app

PROXIED = {"X-Forwarded-For": "203.0.113.9"}


async def test_health_and_readiness_name_no_account(make_runtime, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_runtime(region="eu"), role="serve"))
    for path in ("/healthz", "/readyz"):
        text = await (await client.get(path)).text()
        for word in ("acme", "sandbox", "telegram", "accounts", "version"):
            assert word not in text, (path, word)
    assert await (await client.get("/readyz")).json() == {"status": "ready", "region": "eu"}


async def test_metrics_in_the_demo_are_open(make_runtime, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_runtime(), role="serve"))
    assert (await client.get("/metrics", headers=PROXIED)).status == 200


async def test_metrics_in_production_are_for_loopback_callers_only(
    make_runtime, aiohttp_client, tmp_path: Path
) -> None:
    rt = make_runtime(config=tmp_path / "accounts.yaml")
    assert rt.settings.production()
    client = await aiohttp_client(create_app(rt, role="serve"))
    assert (await client.get("/metrics")).status == 200  # the test client is loopback
    # a proxy in front, even on the same host: not a loopback caller
    refused = await client.get("/metrics", headers=PROXIED)
    assert refused.status == 401
    assert "deskbridge_" not in await refused.text()


async def test_a_metrics_token_is_required_everywhere(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(metrics_token="metrics-token-0123456789")
    client = await aiohttp_client(create_app(rt, role="serve"))
    assert (await client.get("/metrics")).status == 401  # loopback or not
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/metrics", headers=wrong)).status == 401
    right = {"Authorization": "Bearer metrics-token-0123456789", **PROXIED}
    ok = await client.get("/metrics", headers=right)
    assert ok.status == 200 and "deskbridge_http_requests_total" in await ok.text()


async def test_a_metrics_address_moves_metrics_off_the_gateway(
    make_runtime, aiohttp_client, tmp_path: Path
) -> None:
    rt = make_runtime(metrics_address="127.0.0.1:0", config=tmp_path / "accounts.yaml")
    gateway = await aiohttp_client(create_app(rt, role="serve"))
    assert (await gateway.get("/metrics")).status == 404
    own = await aiohttp_client(create_metrics_app(rt))
    assert (await own.get("/metrics", headers=PROXIED)).status == 200
    assert (await own.get("/healthz")).status == 404  # nothing else there
