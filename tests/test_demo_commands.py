"""Every admin command works on the demo with no setup: no token, no keys, no accounts
file, the folder `deskbridge run` was started in (as the README's tour has it). New
commands must be added to WALK."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from deskbridge.cli.main import cli

from .conftest import TEST_REDIS_URL
from .test_cli import DESKBRIDGE, free_port, wait_ready

# the commands that start, check or register a deployment, not admin ones
NOT_ADMIN = {"run", "serve", "worker", "check-config", "simulate", "channels register"}

# in order: what each command is given ({...}: filled from what came before)
WALK: list[tuple[str, list[str]]] = [
    ("token create", ["--scope", "deliveries:read"]),
    ("deliveries list", []),
    ("deliveries show", ["{delivery}"]),
    ("deliveries replay", ["--dry-run"]),
    ("deliveries discard", ["{delivery}", "--reason", "walk"]),
    ("events list", []),
    ("events show", ["{event}"]),
    ("events reingest", ["--since", "1h", "--dry-run"]),
    ("contacts show", ["telegram:700000001"]),
    ("contacts suggestions", []),
    ("contacts link", ["telegram:700000001", "whatsapp:12025550143", "--reason", "walk"]),
    ("contacts unlink", ["telegram:700000001", "whatsapp:12025550143", "--reason", "walk"]),
    ("contacts export", ["whatsapp:12025550143"]),
    ("send", ["--to", "telegram:700000001", "--text", "Your parcel left.", "--key", "walk-1"]),
    ("contacts opt-out", ["telegram:700000001", "--undo"]),
    ("contacts forget", ["telegram:700000001"]),
    ("token revoke", ["--subject", "nobody"]),
    ("stats", []),
    ("route", ["--channel", "telegram", "--text", "I want a refund"]),
    ("keys generate", []),
    ("keys status", []),
    ("keys rotate", ["--dry-run"]),
    ("keys digest-ids", ["--dry-run"]),
    ("console link", ["--scope", "deliveries:read"]),
]


def _leaves(group: click.Group, prefix: str = "") -> set[str]:
    ctx = click.Context(group)
    found: set[str] = set()
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= _leaves(command, f"{full} ")
        else:
            found.add(full)
    return found


def test_the_walk_covers_every_admin_command() -> None:
    assert {name for name, _ in WALK} == _leaves(cli) - NOT_ADMIN


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_admin_command_works_on_the_demo(monkeypatch) -> None:
    # a short folder: the demo's private Redis listens on a unix socket under it, and
    # pytest-xdist's tmp_path (…/popen-gw0/<test name>/) is longer than a socket path may be
    tmp_path = Path(tempfile.mkdtemp(prefix="dbw-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBRIDGE_", "REDIS_URL"))}
    env.update(
        DESKBRIDGE_PORT=str(port),
        DESKBRIDGE_DEMO_SMTP_PORT=str(free_port()),
        DESKBRIDGE_DEMO_SIP_PORT=str(free_port()),
    )
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*DESKBRIDGE, "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    # in this process (a new interpreter per command is slow), with the demo's folder and
    # environment: nothing else
    monkeypatch.chdir(tmp_path)
    unset: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("DESKBRIDGE_", "REDIS_URL"))
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**unset, **env})

    try:
        wait_ready(url, proc, timeout=60)
        for channel, sender in (
            ("telegram", "700000001"),
            ("whatsapp", "12025550143"),
            ("email", "customer@example.com"),
        ):
            sent = run("simulate", channel, "--text", "I want a refund", "--from", sender)
            assert sent.exit_code == 0, sent.output
        # a call is declined by the demo's sip channel (calls: reject 480): said, not failed
        called = run("simulate", "sip", "--call", "--text", "x")
        assert called.exit_code == 0, called.output
        assert "answered 480 (the call is declined or redirected" in called.output
        listed = run("deliveries", "list", "--json")
        assert listed.exit_code == 0, listed.output
        delivery = json.loads(listed.stdout)["deliveries"][0]["id"]
        kept = run("events", "list", "--json")
        assert kept.exit_code == 0, kept.output
        event = json.loads(kept.stdout)["events"][0]["id"]
        for name, args in WALK:
            filled = [a.replace("{delivery}", delivery).replace("{event}", event) for a in args]
            done = run(*name.split(), *filled)
            assert done.exit_code == 0, f"{name}: {done.output}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("production", [False, True])
async def test_the_demo_names_its_data_directory_and_listeners(
    tmp_path: Path, aiohttp_client, redis, production: bool
) -> None:
    import httpx

    from deskbridge.adapters.demo import demo_accounts, demo_secrets
    from deskbridge.flows import Runtime
    from deskbridge.gateway import create_app
    from deskbridge.store import Vault, connect
    from deskbridge.store.crypto import decode_key

    from .conftest import TEST_KEY, test_settings

    accounts = demo_accounts(
        tmp_path,
        smtp_listen="127.0.0.1:2626",
        sip_listen="127.0.0.1:5070",
        web_origins=("http://127.0.0.1:9000", "http://localhost:9000"),
    )
    config = {"config": tmp_path / "accounts.yaml"} if production else {}
    conn = connect(TEST_REDIS_URL)
    async with httpx.AsyncClient() as http:
        rt = Runtime.build(
            test_settings(data_dir=tmp_path, **config),
            accounts,
            conn,
            Vault.from_secret(decode_key(TEST_KEY)),
            http,
        )
        client = await aiohttp_client(create_app(rt, role="run"))
        resp = await client.get("/sandbox/demo.json")
        body = await resp.text()
    await conn.aclose()
    if production:
        assert resp.status == 404  # an accounts file: nothing said about this machine
        return
    assert resp.status == 200
    assert json.loads(body) == {
        "account": "demo",
        "data_dir": str(await asyncio.to_thread(tmp_path.resolve)),
        "smtp_listen": "127.0.0.1:2626",
        "sip_listen": "127.0.0.1:5070",
        "webchat_origins": "http://127.0.0.1:9000 http://localhost:9000",
        # `simulate sms` signs as the provider the demo's SMS channel stands for
        "sms_provider": "twilio",
    }
    for group in demo_secrets(tmp_path, create=False).values():
        for value in group.values() if isinstance(group, dict) else [group]:
            assert str(value) not in body
