"""The command line: `deskbridge run` with no configuration, simulate, check-config."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from deskbridge.cli.main import cli

DESKBRIDGE = [sys.executable, "-m", "deskbridge"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBRIDGE_", "REDIS_URL"))}
    env.update(
        DESKBRIDGE_DATA_DIR=str(tmp / "data"),
        DESKBRIDGE_PORT=str(port),
        DESKBRIDGE_DEMO_SMTP_PORT=str(free_port()),
        DESKBRIDGE_DEMO_SIP_PORT=str(free_port()),
    )
    return env


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"deskbridge exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("deskbridge did not become ready")


@pytest.mark.slow
# one `deskbridge simulate` process per channel: each starts Python (seconds under load)
@pytest.mark.timeout(300)
def test_run_with_no_configuration_serves_the_demo(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*DESKBRIDGE, "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url, proc)
        secrets_file = tmp_path / "data" / "demo-secrets.json"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        secrets = json.loads(secrets_file.read_text())

        text = "hello from the smoke test"
        channels = ("telegram", "whatsapp", "messenger", "instagram", "line", "email", "sip", "sms")
        for channel in channels:
            cmd = [
                *DESKBRIDGE,
                "simulate",
                channel,
                "--text",
                f"{text} via {channel}",
                "--url",
                url,
            ]
            sim = subprocess.run(
                cmd, env=env, cwd=tmp_path, capture_output=True, timeout=30, check=False
            )
            assert sim.returncode == 0, sim.stderr
        deadline = time.monotonic() + 10
        while not all(
            f"{text} via {c}" in httpx.get(f"{url}/sandbox/", timeout=2).text for c in channels
        ):
            assert time.monotonic() < deadline, "a message never reached the sandbox desk"
            time.sleep(0.05)

        # the agent answers each ticket; each channel's sandbox API records the send
        for ticket in map(str, range(1, len(channels) + 1)):
            page = httpx.get(f"{url}/sandbox/demo/tickets/{ticket}", timeout=2).text
            found = re.search(r'name="csrf" value="([^"]+)"', page)
            assert found is not None
            csrf = found.group(1)
            form = {"csrf": csrf, "text": f"agent answer {ticket}"}
            posted = httpx.post(f"{url}/sandbox/demo/tickets/{ticket}/reply", data=form, timeout=5)
            assert posted.status_code in (200, 303)
        deadline = time.monotonic() + 10
        while True:
            index = httpx.get(f"{url}/sandbox/", timeout=2).text
            calls = (
                "sendMessage",
                "messages (text)",
                "RESPONSE",
                "<code>reply</code>",
                "<code>mail</code>",
                "<code>MESSAGE</code>",
            )
            if all(c in index for c in calls):
                break
            assert time.monotonic() < deadline, "a reply never reached its sandbox channel"
            time.sleep(0.05)

        # refused: a wrong secret makes simulate fail with the status
        bad_env = {**env, "DESKBRIDGE_DATA_DIR": str(tmp_path / "elsewhere")}
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "demo-secrets.json").write_text(
            json.dumps({**secrets, "telegram": {**secrets["telegram"], "secret_token": "wrong"}})
        )
        refused = subprocess.run(
            [*DESKBRIDGE, "simulate", "telegram", "--text", "x", "--url", url],
            env=bad_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 1 and b"401" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    log = out.decode()
    assert "demo-secrets.json" in log
    for secret in (
        secrets["telegram"]["bot_token"],
        secrets["telegram"]["secret_token"],
        secrets["encryption_key"],
        *secrets["meta"].values(),
        *secrets["line"].values(),
    ):
        assert secret not in log
    assert text not in log
    # the private Redis kept an append-only file
    assert any((tmp_path / "data" / "redis").rglob("*.aof*"))


def test_check_config_reports_every_problem_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.yaml"
    bad.write_text(
        """
accounts:
  acme:
    desk: {type: zendesk, subdomain: acme}
    channels:
      - type: telegram
        bot_token: not-a-token
        secret_token: ${DESKBRIDGE_TEST_UNSET_VARIABLE}
"""
    )
    result = CliRunner().invoke(cli, ["check-config", str(bad)])
    assert result.exit_code == 2
    assert "accounts.acme.channels[0].secret_token: environment variable" in result.output


def test_check_config_validates_a_good_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TG_TOKEN_FOR_TEST", "123:abc")
    (tmp_path / "secret").write_text("s3cr3t\n")
    good = tmp_path / "accounts.yaml"
    good.write_text(
        """
accounts:
  acme:
    desk: {type: sandbox}
    channels:
      - type: telegram
        bot_token: ${TG_TOKEN_FOR_TEST}
        secret_token_file: secret
"""
    )
    result = CliRunner().invoke(cli, ["check-config", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 account(s): acme (sandbox; telegram)" in result.output


def test_configured_run_needs_an_encryption_key(tmp_path: Path) -> None:
    cfg = tmp_path / "accounts.yaml"
    cfg.write_text("accounts:\n  acme:\n    desk: {type: sandbox}\n")
    env = clean_env(tmp_path, free_port())
    env["DESKBRIDGE_CONFIG"] = str(cfg)
    res = subprocess.run(
        [*DESKBRIDGE, "run"], env=env, capture_output=True, timeout=30, check=False
    )
    assert res.returncode == 2
    assert b"DESKBRIDGE_ENCRYPTION_KEY is not set" in res.stderr


def test_serve_refuses_a_redis_that_may_evict(tmp_path: Path) -> None:
    """A Redis whose maxmemory-policy is not noeviction is refused at start."""
    rdir = tmp_path / "r"
    rdir.mkdir()
    sock = rdir / "redis.sock"
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "allkeys-lru",
            "--dir",
            str(rdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        env = clean_env(tmp_path, free_port())
        env["REDIS_URL"] = f"unix://{sock}"
        res = subprocess.run(
            [*DESKBRIDGE, "serve"], env=env, capture_output=True, timeout=30, check=False
        )
        assert res.returncode == 2
        assert b"noeviction" in res.stderr
    finally:
        server.terminate()
        server.wait(10)


async def test_channels_register_sets_both_webhooks(tmp_path: Path, respx_mock) -> None:
    from deskbridge.cli.register import register
    from deskbridge.config import Settings

    from .conftest import TG_SECRET, TG_TOKEN, ZENDESK_YAML

    cfg = tmp_path / "accounts.yaml"
    cfg.write_text(ZENDESK_YAML)
    zd = "https://acme.zendesk.test/api/v2"
    set_webhook = respx_mock.post(f"https://tg.test/bot{TG_TOKEN}/setWebhook").respond(
        200, json={"ok": True, "result": True}
    )
    respx_mock.get(f"{zd}/webhooks").respond(
        200, json={"webhooks": [], "meta": {"has_more": False}, "links": {}}
    )
    create = respx_mock.post(f"{zd}/webhooks").respond(
        201, json={"webhook": {"id": "wh1", "status": "active"}}
    )
    respx_mock.get(f"{zd}/webhooks/wh1/signing_secret").respond(
        200, json={"signing_secret": {"secret": "the-signing-secret", "algorithm": "SHA256"}}
    )
    ok = await register(Settings(), cfg, "https://bridge.example.com/", None, tmp_path / "secrets")
    assert ok
    tg = json.loads(set_webhook.calls[0].request.content)
    assert tg["url"] == "https://bridge.example.com/webhooks/telegram/acme"
    assert tg["secret_token"] == TG_SECRET
    hook = json.loads(create.calls[0].request.content)["webhook"]
    assert hook["endpoint"] == "https://bridge.example.com/desks/zendesk/acme"
    assert hook["subscriptions"] == ["zen:event-type:ticket.comment_added"]
    secret_file = tmp_path / "secrets" / "zendesk-webhook-secret-acme"
    assert secret_file.read_text().strip() == "the-signing-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_run_names_the_package_when_redis_server_is_missing(tmp_path: Path) -> None:
    env = clean_env(tmp_path, free_port())
    env["PATH"] = str(tmp_path)  # no redis-server anywhere
    res = subprocess.run(
        [*DESKBRIDGE, "run"], env=env, capture_output=True, timeout=30, check=False
    )
    assert res.returncode == 2
    assert b"apt-get install redis-server" in res.stderr


async def test_channels_register_sets_the_line_endpoint(tmp_path: Path, respx_mock) -> None:
    from deskbridge.cli.register import register
    from deskbridge.config import Settings

    from .conftest import LINE_YAML

    cfg = tmp_path / "accounts.yaml"
    cfg.write_text(LINE_YAML)
    endpoint = respx_mock.put("https://line.test/v2/bot/channel/webhook/endpoint").respond(
        200, json={}
    )
    zd = "https://acme.zendesk.test/api/v2"
    respx_mock.get(f"{zd}/webhooks").respond(
        200, json={"webhooks": [], "meta": {"has_more": False}, "links": {}}
    )
    respx_mock.post(f"{zd}/webhooks").respond(
        201, json={"webhook": {"id": "wh1", "status": "active"}}
    )
    respx_mock.get(f"{zd}/webhooks/wh1/signing_secret").respond(
        200, json={"signing_secret": {"secret": "s", "algorithm": "SHA256"}}
    )
    assert await register(Settings(), cfg, "https://bridge.example.com", None, tmp_path / "secrets")
    assert json.loads(endpoint.calls[0].request.content) == {
        "endpoint": "https://bridge.example.com/webhooks/line/acme"
    }
    assert endpoint.calls[0].request.headers["Authorization"] == "Bearer line-access-token"
