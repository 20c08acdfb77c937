"""schemathesis against the admin API's own OpenAPI document, on a real `deskbridge
serve` over loopback: no route answers 5xx to anything the document allows, and every
route refuses a missing, expired, wrong-audience or wrong-scope token."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from deskbridge.gateway.admin import mint

from .conftest import TEST_KEY, TEST_REDIS_URL, ZENDESK_YAML
from .test_cli import DESKBRIDGE, free_port, wait_ready

SECRET = "schemathesis-admin-secret-0123456789abcdef"
AUD = "deskbridge-admin"
SCOPES = ["deliveries:read", "deliveries:write", "contacts:read", "contacts:write", "audit:read"]
EXAMPLES = int(os.environ.get("DESKBRIDGE_SCHEMATHESIS_EXAMPLES", "8"))


def token(*scopes: str, ttl: int = 600, audience: str = AUD) -> str:
    return mint(
        SECRET,
        algorithm="HS256",
        subject="schemathesis",
        scopes=list(scopes),
        ttl_seconds=ttl,
        audience=audience,
    )


@pytest.fixture
def gateway(tmp_path: Path, redis) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "accounts.yaml"
    config.write_text(ZENDESK_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBRIDGE_", "REDIS_URL"))}
    env.update(
        REDIS_URL=TEST_REDIS_URL,
        DESKBRIDGE_CONFIG=str(config),
        DESKBRIDGE_ENCRYPTION_KEY=TEST_KEY,
        DESKBRIDGE_ADMIN_JWT_SECRET=SECRET,
        DESKBRIDGE_PORT=str(port),
        DESKBRIDGE_DATA_DIR=str(tmp_path / "data"),
        DESKBRIDGE_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [*DESKBRIDGE, "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_no_route_answers_5xx_and_every_route_checks_its_token(gateway: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway}/admin/v1/openapi.json")
    good = {"Authorization": f"Bearer {token(*SCOPES)}"}
    bad = {
        "missing": {},
        "expired": {"Authorization": f"Bearer {token(*SCOPES, ttl=-120)}"},
        "wrong audience": {"Authorization": f"Bearer {token(*SCOPES, audience='other')}"},
    }
    checked = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        op = result.ok()
        security = op.definition.raw.get("security")
        scope = security[0]["bearer"][0] if security else None
        _fuzz(op, gateway, good, bad, scope)
        checked += 1
    assert checked >= 10


def _fuzz(
    op, gateway: str, good: dict[str, str], bad: dict[str, dict[str, str]], scope: str | None
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def run(case) -> None:
        resp = case.call(base_url=gateway, headers=good, timeout=10)
        assert resp.status_code < 500, (case.method, case.formatted_path, resp.text)
        if scope is None:
            return  # the document itself needs no token
        for why, headers in bad.items():
            refused = case.call(base_url=gateway, headers=headers, timeout=10)
            assert refused.status_code == 401, (why, case.method, case.formatted_path)
        others = [s for s in SCOPES if s != scope]
        wrong = {"Authorization": f"Bearer {token(*others)}"}
        assert case.call(base_url=gateway, headers=wrong, timeout=10).status_code == 403

    run()
