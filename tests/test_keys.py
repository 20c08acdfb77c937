"""Keyrings, `deskbridge keys` (rotate, status, generate) and residency, on a real Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import yaml
from click.testing import CliRunner

from deskbridge.adapters.webchat import anonymous
from deskbridge.cli.main import cli
from deskbridge.cli.process import load
from deskbridge.config import parse_accounts
from deskbridge.config.residency import check_region
from deskbridge.errors import ConfigError
from deskbridge.flows import Runtime
from deskbridge.gateway import create_app
from deskbridge.schemas import Attachment, Channel, ChannelAddress, Identity
from deskbridge.store import IgnoredItem, Vault, keys
from deskbridge.store.crypto import SealBroken, decode_key, generate_key, key_id
from deskbridge.store.keyring import load_vault, parse_keys_file
from deskbridge.store.rotation import SEALED, Rotation, RotationBusy, classify
from deskbridge.store.tokens import RedisTokenCache
from deskbridge.store.webchat import WidgetFile

from .conftest import DEMO_YAML, TEST_KEY, TEST_REDIS_URL, build_runtime, close_runtime, redis_of
from .conftest import test_settings as settings_for
from .test_store import accept, message
from .test_webchat import ORIGIN as WIDGET_ORIGIN
from .test_webchat import SECRET as WIDGET_SECRET
from .test_webchat import _hello as widget_hello
from .test_webchat import _reply as widget_reply
from .test_webchat import _until as widget_until
from .test_webchat import yaml as widget_yaml

OLD = decode_key(TEST_KEY)
NEW_TEXT = generate_key()
NEW = decode_key(NEW_TEXT)
OLD_ID = key_id(OLD)
WIDGET_VISITOR = "0123456789abcdef0123456789abcdef"
WIDGET_FILE = WidgetFile("A" * 22, "scan.pdf", "application/pdf", 8, "0" * 64)


def keys_file(tmp_path: Path, *, active: str = "new", **extra: object) -> Path:
    doc: dict[str, object] = {
        "keys": [
            {"id": "k-new", "key": NEW_TEXT, "active": active == "new"},
            {"key": TEST_KEY, "active": active == "old"},
        ],
        "lookup_key_from": OLD_ID,
        **extra,
    }
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rotated_vault(tmp_path: Path) -> Vault:
    return parse_keys_file(keys_file(tmp_path))


def build(vault: Vault, yaml_text: str = DEMO_YAML, **overrides: object) -> Runtime:
    return build_runtime(settings_for(**overrides), yaml_text, vault, httpx.AsyncClient(timeout=5))


async def close(*rts: Runtime) -> None:
    for rt in rts:
        await close_runtime(rt)


# --- the keyring -------------------------------------------------------------------------


def test_a_keys_file_seals_with_the_active_key_and_opens_with_every_key(tmp_path) -> None:
    old = Vault.from_secret(OLD)
    ring = rotated_vault(tmp_path)
    assert ring.active_id == "k-new" and set(ring.key_ids) == {"k-new", OLD_ID}
    blob = old.seal(b"hello", "aad")
    assert ring.open(blob, "aad") == b"hello"
    fresh = ring.seal(b"hello", "aad")
    assert Vault.record_key_id(fresh) == "k-new"
    with pytest.raises(SealBroken):
        old.open(fresh, "aad")
    # lookups do not change with the encryption key: lookup_key_from keeps them
    assert ring.digest("identity", "x") == old.digest("identity", "x")


def test_a_json_keys_file_and_key_files(tmp_path) -> None:
    (tmp_path / "new.key").write_text(NEW_TEXT + "\n")
    lookup = generate_key()
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "keys": [{"id": "a", "key_file": "new.key", "active": True}],
                "lookup_key": lookup,
            }
        )
    )
    ring = parse_keys_file(path)
    assert ring.active_id == "a"
    assert ring.digest("x") == Vault({"z": OLD}, "z", decode_key(lookup)).digest("x")


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"keys": [{"key": TEST_KEY}], "lookup_key_from": OLD_ID}, "(top)"),
        (
            {"keys": [{"key": TEST_KEY, "active": True}, {"key": NEW_TEXT, "active": True}]},
            "(top)",
        ),
        ({"keys": [{"key": "not-a-key-at-all", "active": True}]}, "keys[0]"),
        ({"keys": [{"key": TEST_KEY, "active": True}]}, "lookup_key_from"),
        (
            {"keys": [{"key": TEST_KEY, "active": True}], "lookup_key_from": "nope"},
            "lookup_key_from",
        ),
        ({"keys": [{"key": TEST_KEY, "active": True, "colour": 1}]}, "keys.0.colour"),
        (
            {"keys": [{"id": "a", "key": TEST_KEY, "active": True}, {"id": "a", "key": NEW_TEXT}]},
            "keys[1]",
        ),
        ({"keys": [{"key": TEST_KEY, "active": True}], "lookup_key": TEST_KEY}, "lookup_key"),
    ],
)
def test_a_bad_keys_file_is_refused_without_echoing_keys(tmp_path, doc, where) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        parse_keys_file(path)
    assert where in [w for w, _ in info.value.problems]
    shown = str(info.value) + repr(info.value.problems)
    assert TEST_KEY not in shown and NEW_TEXT not in shown


def test_env_key_is_a_one_key_keyring_and_both_settings_are_refused(tmp_path) -> None:
    one = load_vault(keys_file=None, encryption_key=TEST_KEY, lookup_key=None)
    assert one is not None and one.key_ids == (OLD_ID,) and one.active_id == OLD_ID
    assert load_vault(keys_file=None, encryption_key=None, lookup_key=None) is None
    with pytest.raises(ConfigError, match="both"):
        load_vault(keys_file=keys_file(tmp_path), encryption_key=TEST_KEY, lookup_key=None)


# --- every sealed record -------------------------------------------------------------------


async def seal_one_of_each(rt: Runtime) -> None:
    """Write every kind of sealed record through the stores that write them."""
    await accept(rt, [message(1)], body=b'{"customer":"words"}')
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    await rt.conversations.ensure("acme", conv, Channel.TELEGRAM, "42", "c1")
    await rt.conversations.set_reply_token("acme", conv, "reply-token", 1.0)
    await rt.conversations.set_context("acme", conv, {"name": "Ann"})
    await rt.conversations.remember_display_name("acme", "telegram", "42", "Ann", 600)
    people = (
        Identity(kind="channel_user", value="42", channel=Channel.TELEGRAM, strength="strong"),
        Identity(kind="phone", value="+14155550123", strength="strong"),
    )
    await rt.conversations.resolve_contact("acme", people, "Ann")
    await rt.conversations.observe_contact("acme", people, "Ann")
    ticket = await rt.sandbox.create_ticket(
        "acme", subject="hi", requester="Ann", channel="telegram"
    )
    await rt.sandbox.add_message("acme", ticket, author="Ann", text="hello")
    await rt.sandbox.record_sent("acme", {"channel": "telegram", "to": "42", "text": "hey"})
    await RedisTokenCache(redis_of(rt), rt.vault).put("udesk.acme", "tok", 600)
    await rt.intake.ignore(
        account="acme", source="telegram", req=None, items=[IgnoredItem("echo", "m1")]
    )
    await rt.bot.record("acme", "c1", "d1", {"delivery": "d1", "customer": "hi", "bot": None})
    await rt.webchat.put_file("acme", WIDGET_VISITOR, WIDGET_FILE, b"%PDF-1.7", ttl_s=600)
    # named by a message: marked kept (not sealed, left alone by rotation)
    assert await rt.webchat.keep_files("acme", WIDGET_VISITOR, [WIDGET_FILE.id], ttl_s=600)
    await rt.webchat.post(
        "acme", "v_back", {"role": "visitor", "text": "hi"}, client_id="", ttl_s=600
    )


async def sealed_values(redis: aioredis.Redis, kid: str) -> list[str]:
    """Every key holding a value sealed under ``kid`` (whatever the table says)."""
    found = []
    async for raw in redis.scan_iter(count=500):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        # redis-py types async results as `Awaitable[T] | T`, which mypy calls [misc]
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "hash":
            values = list((await redis.hgetall(key)).values())  # type: ignore[misc]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)  # type: ignore[misc]
        elif kind == "zset":
            values = await redis.zrange(key, 0, -1)
        else:
            continue
        if any(v and Vault.record_key_id(v) == kid for v in values):
            found.append(key)
    return sorted(found)


async def test_rotation_table_covers_every_sealed_record(redis, tmp_path) -> None:
    rt = build(Vault.from_secret(OLD))
    try:
        await seal_one_of_each(rt)
        sealed = await sealed_values(redis, OLD_ID)
        uncovered = [k for k in sealed if classify(k) is None]
        assert not uncovered, f"sealed records rotate does not know: {uncovered}"
        seen = {kind.name for k in sealed if (kind := classify(k))}
        assert seen == {kind.name for kind in SEALED}, "a table row no store writes"
    finally:
        await close(rt)


async def test_rotate_reseals_every_record_type_and_the_stores_read_them_back(
    redis, tmp_path
) -> None:
    old_rt = build(Vault.from_secret(OLD))
    try:
        await seal_one_of_each(old_rt)
        ttl_before = await redis.ttl(keys.token("udesk.acme"))
        history = keys.webchat_history("acme", old_rt.webchat.visitor_key("acme", "v_back"))
    finally:
        await close(old_rt)
    ring = rotated_vault(tmp_path)
    tally = await Rotation(redis, ring, batch=7).run()
    assert tally.unreadable == 0 and tally.resealed > 10 and tally.current == 0
    assert await sealed_values(redis, OLD_ID) == []
    assert 0 < await redis.ttl(keys.token("udesk.acme")) <= ttl_before  # TTL kept
    assert 0 < await redis.ttl(history) <= 600  # the one entry's set was never empty
    census = await Rotation(redis, ring).census()
    assert set(census.key_ids()) == {"k-new"}
    again = await Rotation(redis, ring).run()
    assert again.resealed == 0 and again.current == tally.resealed

    # the new key alone (same lookup key) reads everything back
    only_new = Vault({"k-new": NEW}, "k-new", ring._lookup)
    rt = build(only_new)
    try:
        [delivery_id] = [d.decode() for d in await redis.zrange(keys.pending("acme"), 0, -1)]
        d = await rt.deliveries.get("acme", delivery_id)
        assert d is not None
        record = await rt.deliveries.event("acme", d.event_id)
        assert record["event"]["text"] == "message 1"
        raw = await rt.deliveries.raw_request("acme", record["raw_id"])
        assert raw is not None and raw.body == b'{"customer":"words"}'
        conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
        rec = await rt.conversations.get("acme", conv)
        assert rec is not None and rec.thread == "42" and rec.reply_token == "reply-token"
        assert rec.context == {"name": "Ann"}
        assert await rt.conversations.display_name("acme", "telegram", "42") == "Ann"
        [ticket] = await rt.sandbox.tickets("acme")
        assert ticket.requester == "Ann" and ticket.messages[0].text == "hello"
        assert (await rt.sandbox.sent("acme"))[0]["text"] == "hey"
        assert await RedisTokenCache(redis_of(rt), only_new).get("udesk.acme") == "tok"
        graph = rt.conversations.graph
        assert graph is not None
        [cid] = await graph.contacts("acme")
        values = {i.value for i in await graph.members("acme", cid)}
        assert "+14155550123" in values
        assert (await rt.conversations.contact("acme", cid)) is not None
        kept = await rt.webchat.read_file("acme", WIDGET_VISITOR, WIDGET_FILE.id)
        assert kept == (WIDGET_FILE, b"%PDF-1.7")
        [entry] = await rt.webchat.history("acme", "v_back")
        assert (entry.seq, entry.body) == (1, {"role": "visitor", "text": "hi"})
    finally:
        await close(rt)


async def test_a_concurrent_writer_is_never_overwritten(redis, tmp_path) -> None:
    old = Vault.from_secret(OLD)
    rt = build(old)
    ring = rotated_vault(tmp_path)
    writer = build(ring)  # a process already on the new keys file
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    try:
        await rt.conversations.ensure("acme", conv, Channel.TELEGRAM, "42", "c1")
        await rt.conversations.set_context("acme", conv, {"n": "old"})
        await RedisTokenCache(redis_of(rt), old).put("udesk.acme", "old-token", 600)
        await rt.sandbox.record_sent("acme", {"text": "one"})
        await rt.webchat.post("acme", "v_back", {"text": "one"}, client_id="", ttl_s=600)
        history = keys.webchat_history("acme", rt.webchat.visitor_key("acme", "v_back"))
        rot = Rotation(redis, ring)
        found = [(classify(k), k) for k in await sealed_values(redis, OLD_ID)]
        items = await rot._read([(k, n) for k, n in found if k is not None])
        # between rotate's read and its write, live processes change every record
        await writer.conversations.set_context("acme", conv, {"n": "new"})
        await RedisTokenCache(redis_of(writer), old).put("udesk.acme", "old-again", 600)
        await redis.ltrim(keys.sandbox_outbox("acme"), 1, 0)  # trimmed away
        await redis.zremrangebyrank(history, 0, 0)  # past the history's cap
        from deskbridge.store.rotation import Tally

        tally = Tally()
        for item in items:
            await rot._rotate(item, tally)
        assert tally.unreadable == 0 and tally.vanished == 2
        rec = await writer.conversations.get("acme", conv)
        assert rec is not None and rec.context == {"n": "new"}  # the writer's value stands
        assert await RedisTokenCache(redis_of(writer), ring).get("udesk.acme") == "old-again"
        assert await sealed_values(redis, OLD_ID) == []  # the rewritten record was re-sealed

        # and a rotation racing a busy writer end to end
        async def write(n: int) -> None:
            for i in range(n):
                await rt.conversations.set_context("acme", conv, {"n": str(i)})
                await asyncio.sleep(0)

        for i in range(30):
            await rt.conversations.remember_display_name("acme", "telegram", str(i), "x", 600)
        await asyncio.gather(write(200), Rotation(redis, ring, batch=2).run(restart=True))
        rec = await writer.conversations.get("acme", conv)
        assert rec is not None and rec.context == {"n": "199"}
    finally:
        await close(rt, writer)


async def test_an_interrupted_rotation_resumes_from_its_cursor(redis, tmp_path) -> None:
    rt = build(Vault.from_secret(OLD))
    try:
        for i in range(60):
            await rt.conversations.remember_display_name("acme", "telegram", str(i), "x", 600)
    finally:
        await close(rt)
    ring = rotated_vault(tmp_path)

    class Crash(Exception):
        pass

    def crash(t: object) -> None:
        raise Crash

    with pytest.raises(Crash):
        await Rotation(redis, ring, batch=10).run(on_batch=crash)
    state = await Rotation(redis, ring).state()
    assert state["active"] == "k-new" and state["cursor"] != "0" and "finished_at" not in state
    first = int(state["resealed"])
    assert 0 < first < 60
    assert not await redis.exists(keys.ROTATION_LOCK)  # released on the way out
    tally = await Rotation(redis, ring, batch=10).run()
    assert tally.resealed == 60 and tally.scanned >= 60  # counts carried over
    assert "finished_at" in await Rotation(redis, ring).state()
    assert await sealed_values(redis, OLD_ID) == []


async def test_a_second_rotation_is_refused_while_one_runs(redis, tmp_path) -> None:
    await redis.set(keys.ROTATION_LOCK, "someone")
    with pytest.raises(RotationBusy):
        await Rotation(redis, rotated_vault(tmp_path)).run()


async def test_unreadable_records_are_reported_and_left_alone(redis, tmp_path) -> None:
    ring = rotated_vault(tmp_path)
    stranger = Vault.from_secret(decode_key(generate_key()))
    bad_key = keys.event("acme", "lost")
    blob = stranger.seal(b"{}", bad_key)
    await redis.set(bad_key, blob)
    tampered_key = keys.contact("acme", "c9")
    good = Vault.from_secret(OLD).seal(b"{}", tampered_key)
    await redis.set(tampered_key, good[:-1] + bytes([good[-1] ^ 1]))
    tally = await Rotation(redis, ring).run()
    assert tally.unreadable == 2 and tally.resealed == 0
    assert sorted(tally.unreadable_keys) == sorted([bad_key, tampered_key])
    assert await redis.get(bad_key) == blob  # nothing is deleted


async def test_a_widget_visitor_reads_their_history_once_the_old_key_is_retired(
    redis, tmp_path, aiohttp_client
) -> None:
    visitor, token = anonymous(WIDGET_SECRET, None)
    terms = Attachment(kind="document", ref="https://desk.test/att/7", filename="terms.pdf")
    old_rt = build(Vault.from_secret(OLD), widget_yaml())
    try:
        said = {"role": "visitor", "id": "m1", "text": "Where is it?"}
        await old_rt.webchat.post("acme", visitor.id, said, client_id="m1", ttl_s=86400)
        adapter = old_rt.adapter("acme", Channel.WEBCHAT)
        assert adapter is not None
        to = ChannelAddress(channel=Channel.WEBCHAT, account="acme", thread=visitor.id)
        reply = widget_reply("t1", "The terms", 1).model_copy(update={"attachments": (terms,)})
        await adapter.send(reply, to, [])
    finally:
        await close(old_rt)
    ring = rotated_vault(tmp_path)
    tally = await Rotation(redis, ring).run()
    assert tally.unreadable == 0 and tally.by_key[("widget history", OLD_ID)] == 2

    # the old key retired: the returning visitor still gets the whole conversation, and
    # the agent's file behind a link signed now, under the new key
    rt = build(Vault({"k-new": NEW}, "k-new", ring._lookup), widget_yaml())
    try:
        client = await aiohttp_client(create_app(rt, role="serve"))
        ws = await client.ws_connect("/widget/v1/acme/socket", origin=WIDGET_ORIGIN)
        await widget_hello(ws, visitor=token, after=0)
        mine, theirs = await widget_until(ws, "message"), await widget_until(ws, "message")
        assert (mine["role"], mine["text"]) == ("visitor", "Where is it?")
        assert (theirs["role"], theirs["text"]) == ("agent", "The terms")
        [link] = theirs["files"]
        assert link["name"] == "terms.pdf"
        assert rt.links.open(link["url"].split("/media/")[1].split("/")[0]) == ("acme", terms)
        await ws.close()
    finally:
        await close(rt)


# --- the command -----------------------------------------------------------------------


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    for name in ("DESKBRIDGE_ENCRYPTION_KEY", "DESKBRIDGE_LOOKUP_KEY", "DESKBRIDGE_REGION"):
        monkeypatch.delenv(name, raising=False)
    return {"DESKBRIDGE_KEYS_FILE": str(keys_file(tmp_path)), "REDIS_URL": TEST_REDIS_URL}


async def test_cli_dry_run_status_and_rotate(redis, env) -> None:
    rt = build(Vault.from_secret(OLD))
    try:
        await seal_one_of_each(rt)
    finally:
        await close(rt)
    before = await sealed_values(redis, OLD_ID)
    runner = CliRunner()

    dry = await asyncio.to_thread(runner.invoke, cli, ["keys", "rotate", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would be re-sealed under k-new" in dry.output and OLD_ID in dry.output
    assert await sealed_values(redis, OLD_ID) == before  # nothing changed

    done = await asyncio.to_thread(runner.invoke, cli, ["keys", "rotate"], env=env)
    assert done.exit_code == 0, done.output
    assert "rotated to k-new" in done.output and "unreadable 0" in done.output

    status = await asyncio.to_thread(runner.invoke, cli, ["keys", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "k-new" in status.output and "finished" in status.output
    assert NEW_TEXT not in status.output + done.output + dry.output


async def test_cli_rotate_exits_1_on_unreadable_records(redis, env) -> None:
    stranger = Vault.from_secret(decode_key(generate_key()))
    await redis.set(keys.event("acme", "x"), stranger.seal(b"{}", keys.event("acme", "x")))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["keys", "rotate"], env=env)
    assert result.exit_code == 1
    assert "unreadable: " + keys.event("acme", "x") in result.output


def test_cli_refuses_a_bad_keys_file_and_changes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DESKBRIDGE_ENCRYPTION_KEY", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: []\n")
    result = CliRunner().invoke(
        cli, ["keys", "rotate"], env={"DESKBRIDGE_KEYS_FILE": str(bad), "REDIS_URL": TEST_REDIS_URL}
    )
    assert result.exit_code == 2 and "keys file is invalid" in result.output


def test_keys_generate_prints_an_entry_that_loads(tmp_path, caplog) -> None:
    result = CliRunner().invoke(cli, ["keys", "generate", "--id", "k2027"])
    assert result.exit_code == 0
    entry = yaml.safe_load(result.output)[0]
    assert entry["id"] == "k2027" and len(decode_key(entry["key"])) == 32
    as_json = json.loads(CliRunner().invoke(cli, ["keys", "generate", "--json"]).output)
    assert as_json["id"] == key_id(decode_key(as_json["key"]))
    assert entry["key"] not in caplog.text


# --- residency -------------------------------------------------------------------------

REGIONAL = """
accounts:
  eu-shop:
    region: eu
    desk: {type: sandbox}
  us-shop:
    region: us
    desk: {type: sandbox}
  nowhere:
    desk: {type: sandbox}
"""


def test_region_must_be_a_lowercase_id() -> None:
    with pytest.raises(ConfigError):
        parse_accounts("accounts:\n  a:\n    region: EU\n    desk: {type: sandbox}\n")


def test_a_deployment_refuses_accounts_of_other_regions() -> None:
    accounts = parse_accounts(REGIONAL)
    check_region(accounts, None)  # no region named: nothing is checked
    with pytest.raises(ConfigError) as info:
        check_region(accounts, "eu")
    assert "us-shop" in str(info.value) and "nowhere" in str(info.value)
    assert "eu-shop" not in str(info.value)
    assert {w for w, _ in info.value.problems} == {
        "accounts.us-shop.region",
        "accounts.nowhere.region",
    }
    check_region(parse_accounts(REGIONAL.split("  us-shop:")[0]), "eu")


def test_load_and_check_config_refuse_another_region(tmp_path, monkeypatch) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(REGIONAL)
    with pytest.raises(ConfigError, match="us-shop"):
        load(settings_for(region="eu"), path)
    monkeypatch.setenv("DESKBRIDGE_REGION", "sg")
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 2 and "eu-shop" in result.output
    monkeypatch.delenv("DESKBRIDGE_REGION")
    assert CliRunner().invoke(cli, ["check-config", str(path)]).exit_code == 0


async def test_readyz_shows_the_region(aiohttp_client, redis) -> None:
    rt = build(Vault.from_secret(OLD), region="eu")
    try:
        client = await aiohttp_client(create_app(rt, role="serve"))
        body = await (await client.get("/readyz")).json()
        assert body["region"] == "eu"
    finally:
        await close(rt)


# --- what is not sealed ------------------------------------------------------------------


async def test_audit_streams_hold_no_identity_values(redis) -> None:
    """Audit streams are not sealed (entries cannot be re-sealed in place): they must hold
    ids, digests and reasons only."""
    rt = build(Vault.from_secret(OLD))
    try:
        await seal_one_of_each(rt)
        graph = rt.conversations.graph
        assert graph is not None
        a = Identity(kind="phone", value="+14155550123", strength="strong")
        b = Identity(kind="email", value="ann@example.com", strength="strong")
        await graph.link("acme", a, b, actor="ops", reason="same person")
        await graph.unlink("acme", a, b, actor="ops", reason="mistake")
        streams = 0
        async for raw in redis.scan_iter(count=500):
            if await redis.type(raw) != b"stream":
                continue
            streams += 1
            for _, fields in await redis.xrange(raw):
                text = b" ".join(fields.values())
                for secret in (b"4155550123", b"ann@example.com", b"Ann", b"message 1"):
                    assert secret not in text
        assert streams >= 1
    finally:
        await close(rt)


def test_the_deployment_region_is_a_lowercase_id() -> None:
    from pydantic import ValidationError

    from deskbridge.config import Settings

    assert Settings(region="ap-southeast").region == "ap-southeast"
    with pytest.raises(ValidationError):
        Settings(region="EU")
