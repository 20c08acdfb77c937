"""The admin API in-process: JWT auth and scopes, deliveries, replay, discard, raw
re-ingest, the audit log and the OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from deskbridge.adapters.base import Parsed
from deskbridge.errors import ConfigError, PermanentError
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX, ROUTES, AdminAuth, mint
from deskbridge.gateway.admin.openapi import document
from deskbridge.schemas import Channel, DeliveryState, Direction
from deskbridge.store import keys

from .conftest import TG_SECRET, drain, redis_of
from .conftest import test_settings as settings_for
from .test_gateway import signed, update
from .test_pipeline import fake_desk
from .test_store import accept, message

SECRET = "admin-secret-for-tests-0123456789abcdef"
AUD = "deskbridge-admin"
ALL = ["deliveries:read", "deliveries:write", "audit:read"]


def token(*scopes: str, key: str = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    if not claims:
        return mint(
            key,
            algorithm=algorithm,  # type: ignore[arg-type]
            subject="ops@test",
            scopes=list(scopes),
            ttl_seconds=600,
            audience=AUD,
        )
    return jwt.encode(claims, key, algorithm=algorithm)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
async def admin(make_runtime, aiohttp_client):
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    client.rt = rt
    return client


async def get(client, path: str, *scopes: str, **params: str):
    resp = await client.get(PREFIX + path, params=params, headers=auth(token(*(scopes or ALL))))
    return resp.status, await resp.json()


async def post(client, path: str, body: object, *scopes: str):
    resp = await client.post(PREFIX + path, json=body, headers=auth(token(*(scopes or ALL))))
    return resp.status, await resp.json()


async def dead_letters(rt, n: int, thread: str = "42") -> list[str]:
    """``n`` messages of one conversation, each refused by the desk: dead letters."""
    desk = fake_desk(rt, failures=[PermanentError("desk said no: HTTP 422", status=422)] * n)
    await accept(rt, [message(i, thread) for i in range(1, n + 1)])
    await drain(rt)
    ids = [d.decode() for d in await redis_of(rt).zrange(keys.dead("acme"), 0, -1)]
    assert len(ids) == n and desk.calls == n
    return sorted(ids)


# --- authentication and scopes ---------------------------------------------------------------


async def test_without_an_admin_key_every_route_is_closed(make_runtime, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_runtime(), role="serve"))
    for method, path, _, _ in ROUTES:
        concrete = path.replace("{id}", "x").replace("{ref}", "x")
        resp = await client.request(method, PREFIX + concrete, headers=auth("x"))
        assert resp.status == 503
        body = await resp.json()
        assert body["error"] == "admin_disabled"
        assert "DESKBRIDGE_ADMIN_JWT_SECRET" in body["message"]


async def test_missing_and_bad_tokens_are_401_with_a_challenge(admin) -> None:
    now = int(time.time())
    base = {"sub": "ops", "aud": AUD, "scope": "deliveries:read"}
    cases = {
        "missing": None,
        "garbage": "not.a.token",
        "expired": token(**base, exp=now - 120),
        "no exp": token(**base),
        "wrong audience": token(**{**base, "aud": "someone-else"}, exp=now + 60),
        "no audience": token(sub="ops", scope="deliveries:read", exp=now + 60),
        "no sub": token(aud=AUD, scope="deliveries:read", exp=now + 60),
        "wrong key": token(**base, exp=now + 60, key="another-secret-0123456789abcdefghij"),
    }
    for name, tok in cases.items():
        headers = auth(tok) if tok else {}
        resp = await admin.get(f"{PREFIX}/deliveries", headers=headers)
        assert resp.status == 401, name
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), name
        body = await resp.json()
        assert body["error"] == "unauthorized" and body["message"], name
    expired = cases["expired"]
    assert expired is not None
    resp = await admin.get(f"{PREFIX}/deliveries", headers=auth(expired))
    assert (await resp.json())["message"] == "token expired"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forged(header: dict[str, str], claims: dict[str, object], key: bytes | None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing}.{_b64(sig)}"


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def test_alg_none_and_algorithm_confusion_are_refused(make_runtime, aiohttp_client) -> None:
    private, public = rsa_pair()
    rt = make_runtime(admin_jwt_public_key=public)
    client = await aiohttp_client(create_app(rt, role="serve"))
    now = int(time.time())
    claims = {"sub": "ops", "aud": AUD, "iat": now, "exp": now + 60, "scope": "deliveries:read"}
    good = jwt.encode(claims, private, algorithm="RS256")
    assert (await client.get(f"{PREFIX}/deliveries", headers=auth(good))).status == 200
    attacks = {
        # HS256 "signed" with the public key the gateway verifies RS256 with
        "confusion": forged({"alg": "HS256", "typ": "JWT"}, claims, public.encode()),
        "none": forged({"alg": "none", "typ": "JWT"}, claims, None),
        "None": forged({"alg": "None", "typ": "JWT"}, claims, None),
    }
    for name, tok in attacks.items():
        resp = await client.get(f"{PREFIX}/deliveries", headers=auth(tok))
        assert resp.status == 401, name
        assert "RS256" in (await resp.json())["message"], name


async def test_es256_tokens_verify_with_the_public_key(make_runtime, aiohttp_client) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rt = make_runtime(admin_jwt_public_key=public.decode(), admin_jwt_algorithm="ES256")
    client = await aiohttp_client(create_app(rt, role="serve"))
    tok = token("deliveries:read", key=private, algorithm="ES256")
    assert (await client.get(f"{PREFIX}/deliveries", headers=auth(tok))).status == 200


async def test_a_missing_scope_is_403_not_401(admin) -> None:
    resp = await admin.post(
        f"{PREFIX}/deliveries/replay", json={"ids": ["x"]}, headers=auth(token("deliveries:read"))
    )
    assert resp.status == 403
    assert 'scope="deliveries:write"' in resp.headers["WWW-Authenticate"]
    assert (await resp.json()) == {
        "error": "forbidden",
        "message": "this token lacks the scope deliveries:write",
    }
    status, _ = await get(admin, "/audit", "deliveries:read")
    assert status == 403


def test_admin_key_configuration_errors(tmp_path) -> None:
    _, public = rsa_pair()
    bad = [
        {"admin_jwt_secret": "short"},
        {"admin_jwt_secret": SECRET, "admin_jwt_public_key": public},
        {"admin_jwt_public_key": public, "admin_jwt_algorithm": "ES256"},
        {"admin_jwt_secret": SECRET, "admin_jwt_algorithm": "RS256"},
        {"admin_jwt_public_key": "not a key"},
        {"admin_jwt_public_key_path": tmp_path / "missing.pem"},
        {"admin_jwt_algorithm": "HS256"},
    ]
    for overrides in bad:
        with pytest.raises(ConfigError):
            AdminAuth.from_settings(settings_for(**overrides))
    assert AdminAuth.from_settings(settings_for()) is None
    (tmp_path / "key.pem").write_text(public)
    ok = AdminAuth.from_settings(settings_for(admin_jwt_public_key_path=tmp_path / "key.pem"))
    assert ok is not None and ok.algorithm == "RS256"


async def test_the_demo_secret_enables_the_admin_api_for_the_demo_only(
    tmp_path, make_runtime, aiohttp_client
) -> None:
    from deskbridge.adapters.demo import demo_accounts, demo_secrets
    from deskbridge.gateway.admin.auth import admin_auth

    accounts = demo_accounts(tmp_path)
    secret = demo_secrets(tmp_path)["admin_jwt_secret"]
    assert (tmp_path / "demo-secrets.json").stat().st_mode & 0o777 == 0o600
    verifier = admin_auth(settings_for(data_dir=tmp_path), accounts)
    assert verifier is not None and verifier.algorithm == "HS256"
    assert verifier.verify(token("deliveries:read", key=secret)).sub == "ops@test"
    # a real accounts file never picks up the demo's key
    real = make_runtime(data_dir=tmp_path)
    assert admin_auth(real.settings, real.accounts) is None


# --- deliveries --------------------------------------------------------------------------------


async def test_list_filters_and_pages_through_every_delivery(admin) -> None:
    rt = admin.rt
    dead = await dead_letters(rt, 2, thread="7")
    await accept(rt, [message(n, thread=str(n)) for n in range(10, 15)])
    status, body = await get(admin, "/deliveries", state="failed")
    assert status == 200
    assert sorted(d["id"] for d in body["deliveries"]) == dead
    assert all(d["last_error"] == "desk said no: HTTP 422" for d in body["deliveries"])
    # newest first, page by page, nothing twice and nothing missed
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await get(admin, "/deliveries", **params)
        assert status == 200 and len(page["deliveries"]) <= 2
        seen += [d["id"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    _, pending = await get(admin, "/deliveries", state="pending", channel="telegram")
    assert len(pending["deliveries"]) == 5
    _, by_error = await get(admin, "/deliveries", error="SAID NO")
    assert sorted(d["id"] for d in by_error["deliveries"]) == dead
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "12")
    _, one = await get(admin, "/deliveries", conversation=conv, direction="inbound")
    assert [d["conversation_id"] for d in one["deliveries"]] == [conv]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    _, none = await get(admin, "/deliveries", since=future)
    assert none == {"deliveries": [], "next_cursor": None}
    _, everything = await get(admin, "/deliveries", until=future, desk="sandbox", account="acme")
    assert len(everything["deliveries"]) == 7


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"state": "lost"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"account": "nobody"}, "account"),
        ({"channel": "pigeon"}, "channel"),
    ],
)
async def test_bad_list_parameters_are_400(admin, params, word) -> None:
    status, body = await get(admin, "/deliveries", **params)
    assert status == 400 and body["error"] == "bad_request" and word in body["message"]


async def test_show_has_every_attempt_and_unknown_ids_are_404(admin) -> None:
    [dead] = await dead_letters(admin.rt, 1)
    status, body = await get(admin, f"/deliveries/{dead}")
    assert status == 200 and body["state"] == "dead" and body["reason"] == "permanent"
    [attempt] = body["attempt_log"]
    assert attempt["outcome"] == "permanent" and attempt["http_status"] == 422
    assert attempt["error"] == "desk said no: HTTP 422" and attempt["at"]
    status, body = await get(admin, "/deliveries/0123456789abcdef")
    assert status == 404 and body == {
        "error": "not_found",
        "message": "no delivery 0123456789abcdef",
    }


async def test_replay_is_idempotent_and_audited(admin, redis) -> None:
    rt = admin.rt
    [dead] = await dead_letters(rt, 1)
    status, dry = await post(admin, "/deliveries/replay", {"ids": [dead], "dry_run": True})
    assert status == 200 and dry["replayed"] == [dead]
    assert (await rt.deliveries.get("acme", dead)).state is DeliveryState.DEAD
    status, res = await post(admin, "/deliveries/replay", {"ids": [dead, "0" * 32]})
    assert res["replayed"] == [dead] and res["missing"] == ["0" * 32]
    d = await rt.deliveries.get("acme", dead)
    assert d.state is DeliveryState.PENDING and d.attempts == 0 and d.replays == 1
    assert d.replayed_by == "ops@test"
    assert await redis.zscore(keys.dead("acme"), dead) is None
    assert await redis.exists(keys.arq_job(dead))
    # replayed twice before it ran: still one job, one replay
    _, again = await post(admin, "/deliveries/replay", {"ids": [dead]})
    assert again["replayed"] == [] and again["skipped"] == [{"id": dead, "reason": "pending"}]
    await drain(rt)
    assert (await rt.deliveries.get("acme", dead)).state is DeliveryState.DELIVERED
    _, late = await post(admin, "/deliveries/replay", {"ids": [dead]})
    assert late["skipped"] == [{"id": dead, "reason": "delivered"}]
    _, audit = await get(admin, "/audit")
    assert [(e["who"], e["action"], e["count"]) for e in audit["entries"]] == [
        ("ops@test", "deliveries.replay", 0),
        ("ops@test", "deliveries.replay", 0),
        ("ops@test", "deliveries.replay", 1),
    ]
    assert audit["entries"][-1]["details"]["ids"] == [dead, "0" * 32]


async def test_replay_by_filter_only_takes_dead_letters(admin) -> None:
    rt = admin.rt
    dead = await dead_letters(rt, 2)
    await accept(rt, [message(9, thread="99")])
    body = {"filter": {"channel": "telegram", "since": "2000-01-01T00:00:00Z"}}
    status, res = await post(admin, "/deliveries/replay", body)
    assert status == 200 and sorted(res["replayed"]) == dead and res["matched"] == 2
    status, res = await post(admin, "/deliveries/replay", {"ids": dead, "filter": {}})
    assert status == 400 and "either" in res["message"]


async def test_replayed_dead_letters_rejoin_their_lane_in_arrival_order(admin, redis) -> None:
    rt = admin.rt
    first, second = await dead_letters(rt, 2)
    desk = fake_desk(rt)
    await accept(rt, [message(3)])  # waits in the lane, its job enqueued
    [third] = [d.decode() for d in await redis.zrange(keys.pending("acme"), 0, -1)]
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    lane = keys.lane("acme", Direction.INBOUND.value, conv)
    _, res = await post(admin, "/deliveries/replay", {"ids": [second, first]})
    assert res["replayed"] == [first, second]
    assert [x.decode() for x in await redis.lrange(lane, 0, -1)] == [first, second, third]
    await drain(rt)
    assert [text for _, text in desk.filed] == ["message 1", "message 2", "message 3"]


async def test_discard_keeps_who_and_why_and_hands_the_lane_on(admin, redis) -> None:
    rt = admin.rt
    [dead] = await dead_letters(rt, 1)
    status, res = await post(admin, "/deliveries/discard", {"ids": [dead], "reason": " "})
    assert status == 400 and (await rt.deliveries.get("acme", dead)).state is DeliveryState.DEAD
    status, res = await post(admin, "/deliveries/discard", {"ids": [dead]})
    assert status == 400 and "reason" in res["message"]
    status, res = await post(
        admin, "/deliveries/discard", {"ids": [dead], "reason": "customer called instead"}
    )
    assert status == 200 and res["discarded"] == [dead]
    d = await rt.deliveries.get("acme", dead)
    assert d.state is DeliveryState.DISCARDED and d.discarded_by == "ops@test"
    assert d.discard_reason == "customer called instead"
    assert await redis.zscore(keys.dead("acme"), dead) is None
    assert await redis.ttl(keys.delivery("acme", dead)) > 0
    _, res = await post(admin, "/deliveries/replay", {"ids": [dead]})
    assert res["skipped"] == [{"id": dead, "reason": "discarded"}]
    # a pending lane head: discarded, and the next message gets its turn
    desk = fake_desk(rt)
    await accept(rt, [message(5, thread="5"), message(6, thread="5")])
    head, nxt = sorted(d.decode() for d in await redis.zrange(keys.pending("acme"), 0, -1))
    await redis.delete(keys.arq_job(head))  # as if its job were gone
    _, res = await post(admin, "/deliveries/discard", {"ids": [head], "reason": "spam"})
    assert res["discarded"] == [head]
    await drain(rt)
    assert [text for _, text in desk.filed] == ["message 6"]
    assert (await rt.deliveries.get("acme", nxt)).state is DeliveryState.DELIVERED
    _, audit = await get(admin, "/audit", limit="1")
    assert audit["entries"][0]["action"] == "deliveries.discard"
    assert audit["entries"][0]["details"]["reason"] == "spam" and audit["next_cursor"]
    _, older = await get(admin, "/audit", cursor=audit["next_cursor"])
    assert [e["action"] for e in older["entries"]] == ["deliveries.replay", "deliveries.discard"]
    assert older["entries"][1]["details"]["reason"] == "customer called instead"


async def test_expired_records_leave_the_index(admin, redis) -> None:
    rt = admin.rt
    fake_desk(rt)
    await accept(rt, [message(1)])
    await drain(rt)
    [delivered] = [d.decode() for d in await redis.zrange(keys.deliveries("acme"), 0, -1)]
    assert await redis.zscore(keys.expiring("acme"), delivered) is not None
    await redis.delete(keys.delivery("acme", delivered))  # as if it expired
    await redis.zadd(keys.expiring("acme"), {delivered: 1})
    assert await rt.deliveries.trim_index("acme") == 1
    assert await redis.zcard(keys.deliveries("acme")) == 0


# --- raw requests ------------------------------------------------------------------------------


async def test_events_list_and_reingest_after_a_parser_fix(admin, redis, monkeypatch) -> None:
    rt = admin.rt
    unparseable = b'{"update_id": "not-a-number"}'
    resp = await admin.post("/webhooks/telegram/acme", data=unparseable, headers=signed())
    assert resp.status == 200
    resp = await admin.post("/webhooks/telegram/acme", data=update(2001), headers=signed())
    assert resp.status == 200
    status, listed = await get(admin, "/events", channel="telegram")
    assert status == 200 and len(listed["events"]) == 2
    failed = next(e for e in listed["events"] if e["parse_failed"])
    good = next(e for e in listed["events"] if not e["parse_failed"])
    assert failed["size"] == len(unparseable) and "body" not in failed
    assert good["path"] == "/webhooks/telegram/acme"

    since = {"since": "2000-01-01T00:00:00Z", "channel": "telegram"}
    status, dry = await post(admin, "/events/reingest", {**since, "dry_run": True})
    assert status == 200 and dry["totals"] == {
        "raw": 2,
        "new": 0,
        "duplicate": 1,
        "ignored": 0,
        "errors": 1,
    }
    by_id = {r["id"]: r for r in dry["raw"]}
    assert by_id[failed["id"]]["error"].startswith("still does not parse")
    assert by_id[good["id"]]["events"][0]["state"] == "pending"

    # the fix is deployed: the body now parses
    receiver = rt.receiver("telegram", "acme")
    fixed = message(77)
    monkeypatch.setattr(receiver, "parse", lambda req: Parsed([fixed]))
    _, dry = await post(admin, "/events/reingest", {"ids": [failed["id"]], "dry_run": True})
    assert dry["totals"]["new"] == 1 and await redis.zcard(keys.pending("acme")) == 1
    status, done = await post(admin, "/events/reingest", {"ids": [failed["id"]]})
    assert status == 200 and done["totals"]["new"] == 1
    [taken] = done["raw"][0]["events"]
    d = await rt.deliveries.get("acme", taken["delivery_id"])
    assert d.state is DeliveryState.PENDING
    dead = await rt.deliveries.get("acme", failed["delivery_id"])
    assert dead.state is DeliveryState.DISCARDED and dead.discard_reason == "re-ingested"
    # the dead letter left the list; the request is kept again with the event it gave
    _, listed = await get(admin, "/events", channel="telegram")
    assert not any(e["parse_failed"] for e in listed["events"]) and len(listed["events"]) == 2
    # again: reported as taken, not stored twice
    _, again = await post(admin, "/events/reingest", since)
    assert again["totals"] == {"raw": 2, "new": 0, "duplicate": 2, "ignored": 0, "errors": 0}
    assert await redis.zcard(keys.pending("acme")) == 2
    _, audit = await get(admin, "/audit")
    assert [(e["action"], e["count"]) for e in audit["entries"]] == [
        ("events.reingest", 0),
        ("events.reingest", 1),
    ]


async def test_reingest_refuses_requests_older_than_the_dedup_window(admin, redis) -> None:
    resp = await admin.post("/webhooks/telegram/acme", data=update(3001), headers=signed())
    assert resp.status == 200
    [raw_id] = [r.decode() for r in await redis.zrange(keys.raws("acme", "telegram"), 0, -1)]
    await redis.zadd(keys.raws("acme", "telegram"), {raw_id: 1000})  # received in 1970
    body = {"ids": [raw_id], "dry_run": True}
    _, res = await post(admin, "/events/reingest", body)
    assert "dedup window" in res["raw"][0]["error"]
    _, res = await post(admin, "/events/reingest", {**body, "allow_duplicates": True})
    assert res["totals"]["duplicate"] == 1 and "error" not in res["raw"][0]
    status, res = await post(admin, "/events/reingest", {"dry_run": True})
    assert status == 400 and "since" in res["message"]
    status, res = await post(admin, "/events/reingest", {"ids": ["0" * 32]})
    assert status == 400 and "no kept raw request" in res["message"]


# --- the document ------------------------------------------------------------------------------


async def test_openapi_document_matches_the_routes(admin) -> None:
    resp = await admin.get(f"{PREFIX}/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc == document() and doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in admin.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith(PREFIX) and r.method != "HEAD"
    }
    assert documented == served
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if not path.endswith("openapi.json"):
                [[scope]] = [s["bearer"] for s in op["security"]]
                assert any(scope == r[2] for r in ROUTES)


def test_tokens_carry_subject_scopes_and_expiry() -> None:
    verifier = AdminAuth("HS256", SECRET, AUD)
    who = verifier.verify(token("deliveries:read", "audit:read"))
    assert who.sub == "ops@test" and who.scopes == {"deliveries:read", "audit:read"}
    claims = jwt.get_unverified_claims(token("deliveries:read"))
    assert claims["exp"] - claims["iat"] == 600 and claims["aud"] == AUD and claims["jti"]
    assert TG_SECRET not in json.dumps(claims)


# --- token claims, lifetime and revocation (docs/security.md, docs/admin.md) ---------------


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "ops",
        "aud": AUD,
        "iat": now,
        "exp": now + 600,
        "jti": "j-1",
        "scope": "deliveries:read tokens:write",
        **over,
    }


def claimed(**over: object) -> str:
    """A token signed with the test secret, with ``_claims(**over)``."""
    return str(jwt.encode(_claims(**over), SECRET, algorithm="HS256"))


async def _status(client, tok: str) -> tuple[int, str]:
    resp = await client.get(f"{PREFIX}/deliveries", headers=auth(tok))
    return resp.status, (await resp.json()).get("message", "")


async def test_iat_is_required_and_at_most_30_s_ahead(admin) -> None:
    now = int(time.time())
    without = _claims()
    del without["iat"]
    assert await _status(admin, jwt.encode(without, SECRET)) == (401, "invalid token (no iat)")
    ahead = claimed(iat=now + 300, exp=now + 900)
    assert await _status(admin, ahead) == (401, "token issued in the future (iat)")
    # within the documented 30 s leeway: a clock a little ahead is accepted
    assert (await _status(admin, claimed(iat=now + 20)))[0] == 200


async def test_a_lifetime_over_the_server_maximum_is_refused_whatever_the_signature(
    admin, make_runtime, aiohttp_client
) -> None:
    now = int(time.time())
    ten_years = claimed(exp=now + 10 * 365 * 86400)
    status, message = await _status(admin, ten_years)
    assert status == 401 and "maximum (2592000 s)" in message
    assert (await _status(admin, claimed(exp=now + 30 * 86400)))[0] == 200
    rt = make_runtime(admin_jwt_secret=SECRET, admin_jwt_max_ttl=3600)
    short = await aiohttp_client(create_app(rt, role="serve"))
    assert (await _status(short, claimed(exp=now + 7200)))[0] == 401
    assert (await _status(short, claimed(exp=now + 3600)))[0] == 200


async def test_a_revoked_jti_is_refused_on_the_next_request_and_audited(admin) -> None:
    tok = claimed(jti="to-revoke")
    other = claimed(jti="kept")
    assert (await _status(admin, tok))[0] == 200
    exp = int(time.time()) + 600
    status, body = await post(
        admin, "/tokens/revoke", {"jti": "to-revoke", "exp": exp}, "tokens:write"
    )
    assert status == 200 and body["jti"] == "to-revoke"
    assert await _status(admin, tok) == (401, "token revoked")
    assert (await _status(admin, other))[0] == 200
    redis = redis_of(admin.rt)
    ttl = await redis.ttl(keys.revoked_token("to-revoke"))
    assert 0 < ttl <= 600 + 30  # kept until the token's exp (and the leeway), no longer
    _, audit = await get(admin, "/audit", "audit:read")
    [entry] = [e for e in audit["entries"] if e["action"] == "tokens.revoke"]
    assert entry["details"] == {"jti": "to-revoke"} and entry["who"] == "ops@test"


async def test_revoking_a_subject_refuses_its_tokens_issued_up_to_now(admin) -> None:
    now = int(time.time())
    old = claimed(sub="alice", jti="a1", iat=now - 60)
    bob = claimed(sub="bob", jti="b1")
    status, body = await post(admin, "/tokens/revoke", {"subject": "alice"}, "tokens:write")
    assert status == 200 and body["subject"] == "alice" and body["issued_up_to"]
    assert await _status(admin, old) == (401, "token revoked")
    assert (await _status(admin, bob))[0] == 200
    later = claimed(sub="alice", jti="a2", iat=now + 2, exp=now + 600)
    assert (await _status(admin, later))[0] == 200
    ttl = await redis_of(admin.rt).ttl(keys.revoked_subject("alice"))
    assert 30 * 86400 - 60 < ttl <= 30 * 86400 + 60


async def test_revoke_needs_its_scope_and_one_target(admin) -> None:
    status, _ = await post(admin, "/tokens/revoke", {"jti": "x"}, "deliveries:write")
    assert status == 403
    for body in ({}, {"jti": "x", "subject": "y"}):
        status, answer = await post(admin, "/tokens/revoke", body, "tokens:write")
        assert status == 400 and "jti or subject" in answer["message"]


async def test_a_revocation_that_cannot_be_read_is_never_taken_as_none(admin) -> None:
    from deskbridge.errors import StoreUnavailable

    async def down(*_: object) -> bool:
        raise StoreUnavailable("redis down")

    admin.rt.revocations.revoked = down
    assert (await _status(admin, claimed()))[0] == 503


async def test_nbf_is_checked_with_the_leeway(admin) -> None:
    now = int(time.time())
    assert (await _status(admin, claimed(nbf=now + 120)))[0] == 401
    assert (await _status(admin, claimed(nbf=now + 20)))[0] == 200
    assert (await _status(admin, claimed(exp=now - 20)))[0] == 200  # leeway on exp
