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
            said = proc.stdout.read().decode(errors="replace")[-3000:] if proc.stdout else ""
            raise AssertionError(f"deskbridge exited with {proc.returncode}:\n{said}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("deskbridge did not become ready")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["http", "smtp", "sip"])
def test_run_refuses_to_start_on_a_busy_port(tmp_path: Path, which: str) -> None:
    port = free_port()
    env = clean_env(tmp_path, port)
    busy_port = {
        "http": port,
        "smtp": int(env["DESKBRIDGE_DEMO_SMTP_PORT"]),
        "sip": int(env["DESKBRIDGE_DEMO_SIP_PORT"]),
    }[which]
    kind = socket.SOCK_DGRAM if which == "sip" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as busy:
        busy.bind(("127.0.0.1", busy_port))
        if kind == socket.SOCK_STREAM:
            busy.listen()
        done = subprocess.run(
            [*DESKBRIDGE, "run"], env=env, cwd=tmp_path, capture_output=True, timeout=60
        )
    out = done.stderr.decode()
    assert done.returncode == 2, out
    assert "Traceback" not in out
    [line] = [x for x in out.splitlines() if x.startswith("error:")]
    assert f"{which} port 127.0.0.1:{busy_port}: Address already in use" in line
    assert "deskbridge 0.1.0: run on" not in out  # no banner advertising a dead port


@pytest.mark.slow
@pytest.mark.timeout(300)  # a `deskbridge run` and a CLI process per channel: minutes when loaded
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
        # on a free port, not 8080: the widget's demo accepts the origin it is served at
        channels = (
            *("telegram", "whatsapp", "messenger", "instagram", "line", "email", "sip", "sms"),
            "webchat",
        )
        # simulate from another folder, with another instance's environment: the
        # instance at --url names its data directory and listeners itself
        elsewhere = tmp_path / "another-folder"
        elsewhere.mkdir()
        other_env = {k: v for k, v in env.items() if k != "DESKBRIDGE_DATA_DIR"}
        other_env.update(
            DESKBRIDGE_DEMO_SMTP_PORT=str(free_port()), DESKBRIDGE_DEMO_SIP_PORT=str(free_port())
        )
        said = {}
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
                cmd, env=other_env, cwd=elsewhere, capture_output=True, timeout=30, check=False
            )
            assert sim.returncode == 0, sim.stderr
            said[channel] = sim.stdout.decode().strip()
        assert said["telegram"] == f"the gateway at {url} answered HTTP 200"
        smtp, sip = env["DESKBRIDGE_DEMO_SMTP_PORT"], env["DESKBRIDGE_DEMO_SIP_PORT"]
        assert said["email"].startswith("the email listener (")
        assert said["email"].endswith(f"by SMTP at 127.0.0.1:{smtp}) answered 250")
        assert said["sip"] == f"the sip listener (UDP/TCP at 127.0.0.1:{sip}) answered 200"
        assert not (elsewhere / ".deskbridge").exists()
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
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(
            "accounts:\n  demo:\n    desk: {type: sandbox}\n    channels:\n"
            f"      - {{type: telegram, bot_token: '{secrets['telegram']['bot_token']}', "
            "secret_token: wrong}\n"
        )
        refused = subprocess.run(
            [*DESKBRIDGE, "simulate", "telegram", "--text", "x", "--url", url],
            env={**env, "DESKBRIDGE_CONFIG": str(wrong)},
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 1
        assert refused.stderr.decode().strip() == f"refused: the gateway at {url} answered HTTP 401"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    log = out.decode()
    assert "demo-secrets.json" in log
    assert "shutting down on SIGTERM" in log and "SIGUSR1" not in log
    assert ": run on " in log and "(event loop: uvloop)" in log  # uvloop is installed here
    # the banner's example runs this same deskbridge (here: python -m deskbridge)
    assert f'try: {sys.executable} -m deskbridge simulate telegram --text "hello"' in log
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


def test_check_config_prints_plain_unwrapped_lines_when_piped(tmp_path: Path) -> None:
    bad = tmp_path / ("a-rather-long-folder-name-" * 3) / "accounts.yaml"
    bad.parent.mkdir()
    bad.write_text(
        """
accounts:
  Bad Name:
    desk: {type: sandbox}
  acme:
    desk: {type: zendesk, base_url: "127.0.0.1:18301/zendesk", email: [a@b.c], api_token: t}
    channels:
      - {type: telegram, bot_token: not-a-token, secret_token: "${DESKBRIDGE_TEST_UNSET}"}
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "DESKBRIDGE_TEST_UNSET"}
    done = subprocess.run(
        [*DESKBRIDGE, "check-config", str(bad)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    first, *lines = done.stderr.splitlines()
    assert first == f"error: {bad}: invalid"
    assert lines == [
        f"{bad}: accounts.acme.channels[0].secret_token: environment variable "
        "DESKBRIDGE_TEST_UNSET is not set",
        f"{bad}: accounts.Bad Name (the name): String should match pattern "
        "'^[a-z0-9][a-z0-9_-]{0,62}$'",
        f"{bad}: accounts.acme.desk.base_url: '127.0.0.1:18301/zendesk' is not an http:// "
        "or https:// URL",
        f"{bad}: accounts.acme.desk.email: Input should be a valid string",
        f"{bad}: accounts.acme.channels[0].bot_token: is not a bot token of the form "
        "123456:ABC-DEF...",
    ]


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

    # an accounts file naming the secret's file (not written yet) passes check-config and
    # gets the secret written there
    named = re.sub(r"webhook_secret: .*", "webhook_secret_file: secrets/zd-hook", ZENDESK_YAML)
    assert named.count("webhook_secret_file: secrets/zd-hook") == 1
    cfg.write_text(named)
    checked = CliRunner().invoke(cli, ["check-config", str(cfg)])
    assert checked.exit_code == 0, checked.output
    assert "secrets/zd-hook is not written yet (`channels register`)" in checked.output
    ok = await register(Settings(), cfg, "https://bridge.example.com/", None, tmp_path / "other")
    assert ok
    assert (tmp_path / "secrets" / "zd-hook").read_text().strip() == "the-signing-secret"
    assert not (tmp_path / "other").exists()


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


def test_the_banner_names_the_command_as_it_can_be_run(tmp_path: Path, monkeypatch) -> None:
    from deskbridge.cli.process import _command_name

    script = tmp_path / ".venv" / "bin" / "deskbridge"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(script)])
    assert _command_name() == ".venv/bin/deskbridge"  # `make run` from the checkout
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert _command_name() == "deskbridge"  # an activated venv, or an installed one
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert _command_name() == str(script)
    monkeypatch.setattr(sys, "argv", ["/x/site-packages/deskbridge/__main__.py"])
    assert _command_name() == f"{sys.executable} -m deskbridge"


def test_run_warns_of_a_webhook_secret_not_written_yet(tmp_path: Path, caplog) -> None:
    from deskbridge.cli.process import load
    from deskbridge.config import Settings

    from .conftest import TEST_KEY

    cfg = tmp_path / "accounts.yaml"
    cfg.write_text(
        "accounts:\n  acme:\n    desk:\n      type: zendesk\n      subdomain: acme\n"
        "      email: agent@acme.example\n      api_token: t\n"
        "      webhook_secret_file: zd-hook\n"
    )
    with caplog.at_level("WARNING", logger="deskbridge"):
        loaded = load(Settings(encryption_key=TEST_KEY), cfg)
    assert list(loaded.accounts.accounts) == ["acme"]
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"accounts.acme.desk.webhook_secret_file: {tmp_path / 'zd-hook'} is")
    assert "refused until then" in line
