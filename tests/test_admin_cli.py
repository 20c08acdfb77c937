"""The admin commands against a real gateway on a real socket (port 0) and a running
worker; respx stands in for Zendesk only."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deskbridge.adapters.telegram import sample_update
from deskbridge.cli.admin_api import parse_duration, parse_when
from deskbridge.cli.main import cli
from deskbridge.flows.notes import note
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import AdminAuth
from deskbridge.pipeline import build_worker
from deskbridge.schemas import Channel, Direction
from deskbridge.store import keys

from .conftest import TEST_REDIS_URL, ZENDESK_YAML
from .test_admin_api import SECRET, token
from .test_cli import free_port
from .test_gateway import signed

ZD = "https://acme.zendesk.test/api/v2"
WRITE = ("deliveries:read", "deliveries:write", "audit:read")


async def run(*args: str, tok: str | None = None, **env: str) -> Result:
    """The CLI in a thread (the gateway answers on this loop)."""
    environ = {"DESKBRIDGE_TOKEN": tok if tok is not None else token(*WRITE), **env}
    return await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), env=environ, catch_exceptions=False
    )


@contextlib.asynccontextmanager
async def worker(rt) -> AsyncIterator[None]:
    w = build_worker(rt, TEST_REDIS_URL)
    task = asyncio.create_task(w.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await w.close()


class Zendesk:
    """Zendesk's users endpoint refuses (422) until ``ok`` is set."""

    def __init__(self, respx_mock) -> None:
        self.ok = False
        respx_mock.route(host="127.0.0.1").pass_through()
        respx_mock.post(f"{ZD}/users/create_or_update").mock(side_effect=self.users)
        respx_mock.get(url__regex=rf"{ZD}/users/\d+/identities").respond(
            200, json={"identities": [], "next_page": None}
        )
        respx_mock.post(f"{ZD}/tickets").respond(
            201,
            json={
                "ticket": {"id": 77, "status": "new"},
                "audit": {"events": [{"type": "Comment", "id": 1001}]},
            },
        )

    def users(self, request: httpx.Request) -> httpx.Response:
        if self.ok:
            return httpx.Response(201, json={"user": {"id": 501}})
        return httpx.Response(422, json={"error": "RecordInvalid", "description": "nope"})


@pytest.fixture
async def gateway(make_runtime, aiohttp_server, respx_mock):
    rt = make_runtime(ZENDESK_YAML, admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    return rt, url, Zendesk(respx_mock)


async def until(check) -> None:
    """Poll the store (the worker runs on this loop; pytest-timeout bounds the wait)."""
    while True:
        if await check():
            return
        await asyncio.sleep(0.02)


async def post_updates(url: str, *chats: int) -> None:
    async with httpx.AsyncClient() as client:
        for chat in chats:
            body = sample_update(
                f"hello from {chat}", update_id=5000 + chat, chat_id=chat, user_id=chat
            )
            resp = await client.post(
                f"{url}/webhooks/telegram/acme", content=body, headers=signed()
            )
            assert resp.status_code == 200


async def test_operator_workflow_end_to_end(gateway, redis) -> None:
    rt, url, zendesk = gateway
    async with worker(rt):
        await post_updates(url, 42, 43)

        async def both_dead() -> bool:
            return await redis.zcard(keys.dead("acme")) == 2

        await until(both_dead)
        listed = await run("deliveries", "list", "--state", "failed", "--json", "--url", url)
        assert listed.exit_code == 0, listed.output
        first, second = sorted(d["id"] for d in json.loads(listed.stdout)["deliveries"])
        table = await run("deliveries", "list", "--since", "1h", "--url", url)
        assert table.exit_code == 0 and first in table.stdout and "dead (permanent)" in table.stdout
        assert "Telegram" in table.stdout and "Zendesk" in table.stdout  # as owners spell them
        assert "2 deliveries" in table.stderr

        shown = await run("deliveries", "show", first, "--url", url)
        assert shown.exit_code == 0
        assert "permanent" in shown.stdout and "422" in shown.stdout

        dry = await run(
            "deliveries", "replay", "--state", "failed", "--since", "2h", "--channel",
            "telegram", "--dry-run", "--url", url,
        )  # fmt: skip
        assert dry.exit_code == 0 and "would replay 2, skipped 0" in dry.stdout
        assert await redis.zcard(keys.dead("acme")) == 2

        zendesk.ok = True
        ok = await run("deliveries", "replay", first, "--wait", "30", "--url", url)
        assert ok.exit_code == 0, ok.output
        assert "replayed 1, skipped 0, delivered 1, failed again 0" in ok.stdout

        zendesk.ok = False
        again = await run("deliveries", "replay", second, first, "--wait", "30", "--url", url)
        assert again.exit_code == 1, again.output
        assert "replayed 1, skipped 1, delivered 0, failed again 1" in again.stdout
        assert f"skipped {first}: delivered" in again.stdout

        gone = await run(
            "deliveries", "discard", second, "--reason", "handled by phone", "--url", url
        )
        assert gone.exit_code == 0 and "discarded 1, skipped 0" in gone.stdout

        events = await run("events", "list", "--channel", "telegram", "--url", url)
        assert events.exit_code == 0 and "2 raw request(s)" in events.stderr
        reingest = await run("events", "reingest", "--since", "1h", "--dry-run", "--url", url)
        assert reingest.exit_code == 0, reingest.output
        assert "would deliver 0, already taken 2 (1 delivered, 1 discarded)" in reingest.stdout

    audit = await run("deliveries", "list", "--json", "--state", "discarded", "--url", url)
    [discarded] = json.loads(audit.stdout)["deliveries"]
    assert (
        discarded["discarded_by"] == "ops@test"
        and discarded["discard_reason"] == "handled by phone"
    )


async def test_clear_one_line_errors(gateway) -> None:
    _, url, _ = gateway
    bad = await run("deliveries", "list", "--url", url, tok="not-a-token")
    assert bad.exit_code == 3
    assert "refused the token (401" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    weak = token("deliveries:read")
    forbidden = await run("deliveries", "discard", "x", "--reason", "r", "--url", url, tok=weak)
    assert forbidden.exit_code == 3 and "403" in forbidden.stderr
    assert "deliveries:write" in forbidden.stderr

    unknown = await run("deliveries", "show", "0123456789abcdef", "--url", url)
    assert unknown.exit_code == 3 and "no delivery 0123456789abcdef" in unknown.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    down = await run("deliveries", "list", "--url", nowhere)
    assert down.exit_code == 3 and f"cannot reach the gateway at {nowhere}" in down.stderr

    missing = await run("deliveries", "list", "--url", url, tok="")
    assert missing.exit_code == 2 and "DESKBRIDGE_TOKEN" in missing.stderr

    usage = await run("deliveries", "replay", "--url", url)
    assert usage.exit_code == 2 and "--state failed" in usage.stderr
    bad_time = await run("deliveries", "list", "--since", "last tuesday", "--url", url)
    assert bad_time.exit_code == 2 and "neither a duration" in bad_time.stderr


async def test_token_create_from_the_secret_the_demo_file_or_a_private_key(tmp_path: Path) -> None:
    verifier = AdminAuth("HS256", SECRET, "deskbridge-admin")
    made = await run(
        "token", "create", "--scope", "deliveries:read", "--ttl", "10m", "--subject", "ana",
        DESKBRIDGE_ADMIN_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert made.exit_code == 0 and made.stdout.count("\n") == 1 and SECRET not in made.output
    who = verifier.verify(made.stdout.strip())
    assert who.sub == "ana" and who.scopes == {"deliveries:read"}

    # the demo: the secret is read from its 0600 file, never printed
    from deskbridge.adapters.demo import demo_secrets
    from deskbridge.gateway.admin.auth import admin_auth

    demo_secret = demo_secrets(tmp_path)["admin_jwt_secret"]
    demo = await run(
        "token", "create", "--scope", "deliveries:write", DESKBRIDGE_DATA_DIR=str(tmp_path)
    )
    assert demo.exit_code == 0 and demo_secret not in demo.output
    assert AdminAuth("HS256", demo_secret, "deskbridge-admin").verify(demo.stdout.strip())

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "admin.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed_rs = await run("token", "create", "--scope", "audit:read", "--private-key", str(pem))
    assert signed_rs.exit_code == 0
    assert AdminAuth("RS256", public.decode(), "deskbridge-admin").verify(signed_rs.stdout.strip())

    empty = tmp_path / "empty"
    none = await run("token", "create", "--scope", "audit:read", DESKBRIDGE_DATA_DIR=str(empty))
    assert none.exit_code == 2 and "DESKBRIDGE_ADMIN_JWT_SECRET" in none.stderr
    too_long = await run(
        "token", "create", "--scope", "audit:read", "--ttl", "90d",
        DESKBRIDGE_ADMIN_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert too_long.exit_code == 2
    assert admin_auth is not None


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_admin_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for path, _ in _commands(cli):
        if path[0] not in ("token", "deliveries", "events", "contacts"):
            continue
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, path


def test_shell_completion() -> None:
    runner = CliRunner()
    script = runner.invoke(
        cli, [], prog_name="deskbridge", env={"_DESKBRIDGE_COMPLETE": "bash_source"}
    )
    assert script.exit_code == 0 and "_deskbridge_completion" in script.stdout
    words = runner.invoke(
        cli,
        [],
        prog_name="deskbridge",
        env={
            "_DESKBRIDGE_COMPLETE": "bash_complete",
            "COMP_WORDS": "deskbridge deliveries replay --state f",
            "COMP_CWORD": "4",
        },
    )
    assert "failed" in words.stdout


def test_durations_and_times() -> None:
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_when("2026-01-01T10:00:00") == "2026-01-01T10:00:00+00:00"
    assert parse_when("2026-01-01T10:00:00+02:00") == "2026-01-01T10:00:00+02:00"
    for bad in ("", "2x", "h", "1 h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


async def test_notes_to_agents_are_listed_shown_and_replayed(gateway, respx_mock, redis) -> None:
    """A note the desk refused is a dead letter like any other (issue 16)."""
    rt, url, zendesk = gateway
    zendesk.ok = True
    answers = [httpx.Response(422, json={"error": "RecordInvalid", "description": "no"})]
    ok = httpx.Response(
        200, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 2}]}}
    )
    put = respx_mock.put(f"{ZD}/tickets/77").mock(
        side_effect=lambda request: answers.pop(0) if answers else ok
    )
    async with worker(rt):
        await post_updates(url, 42)
        conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")

        async def filed() -> bool:
            c = await rt.conversations.get("acme", conv)
            return c is not None and c.ticket_id == "77"

        await until(filed)
        [first] = [
            d
            for d in await rt.deliveries.get_many([("acme", i) for i in await inbound_ids(redis)])
            if d is not None and d.direction is Direction.INBOUND
        ]
        assert await note(rt, first, "Please check the address", why="cli")

        async def dead() -> bool:
            return await redis.zcard(keys.dead("acme")) == 1

        await until(dead)
        listed = await run("deliveries", "list", "--kind", "note", "--json", "--url", url)
        [row] = json.loads(listed.stdout)["deliveries"]
        assert row["kind"] == "note" and row["state"] == "dead"
        table = await run("deliveries", "list", "--kind", "note", "--url", url)
        assert "note" in table.stdout and row["id"] in table.stdout
        events = await run("deliveries", "list", "--kind", "event", "--json", "--url", url)
        assert [d["id"] for d in json.loads(events.stdout)["deliveries"]] == [first.id]
        shown = await run("deliveries", "show", row["id"], "--url", url)
        assert "kind: note" in shown.stdout and "422" in shown.stdout

        replayed = await run(
            "deliveries", "replay", "--kind", "note", "--state", "failed", "--url", url
        )
        assert replayed.exit_code == 0, replayed.output

        async def delivered() -> bool:
            d = await rt.deliveries.get("acme", row["id"])
            return d is not None and d.state.value == "delivered"

        await until(delivered)
    bodies = [json.loads(c.request.content)["ticket"]["comment"] for c in put.calls]
    assert [b["body"] for b in bodies] == ["Please check the address"] * 2
    assert not any(b.get("public", True) for b in bodies)


async def inbound_ids(redis) -> list[str]:
    return [
        k.decode().rsplit(":", 1)[1]
        for k in await redis.keys("db:{acme}:dlv:*")
        if not k.endswith(b":attempts")
    ]


async def test_token_revoke_by_jti_and_by_subject(gateway) -> None:
    from .test_admin_api import claimed

    _, url, _ = gateway
    admin = token("tokens:write", "deliveries:read")
    victim = claimed(sub="mallory", jti="stolen-1")
    async with httpx.AsyncClient(base_url=url) as client:
        before = await client.get(
            "/admin/v1/deliveries", headers={"Authorization": f"Bearer {victim}"}
        )
        assert before.status_code == 200
        done = await run("token", "revoke", "stolen-1", "--url", url, tok=admin)
        assert done.exit_code == 0 and "revoked token stolen-1" in done.stdout
        after = await client.get(
            "/admin/v1/deliveries", headers={"Authorization": f"Bearer {victim}"}
        )
        assert after.status_code == 401
    by_subject = await run(
        "token", "revoke", "--subject", "mallory", "--json", "--url", url, tok=admin
    )
    assert by_subject.exit_code == 0 and json.loads(by_subject.stdout)["subject"] == "mallory"
    both = await run("token", "revoke", "x", "--subject", "y", "--url", url, tok=admin)
    assert both.exit_code == 2 and "not both" in both.output
    refused = await run("token", "revoke", "x", "--url", url, tok=token("deliveries:read"))
    assert refused.exit_code == 3 and "tokens:write" in refused.output


def test_an_error_line_keeps_its_brackets(capsys) -> None:
    from deskbridge.cli.admin_api import die

    with pytest.raises(SystemExit):
        die("account: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$' [bold]x[/]")
    assert capsys.readouterr().err.strip() == (
        "error: account: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$' [bold]x[/]"
    )
