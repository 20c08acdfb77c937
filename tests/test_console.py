"""The operator console in-process: sessions, CSRF, scopes, cookie flags, the end of a
session with its token, sign-in links, and no sealed field without ``contacts:read``."""

from __future__ import annotations

import re

from deskbridge.gateway import create_app
from deskbridge.gateway.admin.auth import mint
from deskbridge.gateway.console import PAGES
from deskbridge.gateway.console.session import COOKIE, LINK_SCOPE
from deskbridge.schemas import DeliveryState
from deskbridge.store import keys

from .conftest import redis_of
from .test_admin_api import SECRET, dead_letters, token
from .test_admin_contacts import tg, wa

EVERY = [
    "deliveries:read",
    "deliveries:write",
    "contacts:read",
    "contacts:write",
    "audit:read",
    "ops:read",
]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def console(make_runtime, aiohttp_client, **settings):
    rt = make_runtime(admin_jwt_secret=SECRET, console=True, **settings)
    client = await aiohttp_client(create_app(rt, role="serve"))
    client.rt = rt
    return client


async def sign_in(client, tok: str):
    """Sign in with ``tok``; the response of the sign-in POST (cookies kept by the jar)."""
    form = await client.get("/console/signin")
    found = _CSRF.search(await form.text())
    assert found is not None
    nonce = found[1]
    return await client.post(
        "/console/signin", data={"csrf": nonce, "token": tok}, allow_redirects=False
    )


async def csrf_of(client) -> str:
    resp = await client.get("/console/deliveries")
    found = _CSRF.search(await resp.text())
    assert found is not None
    return found[1]


def concrete(path: str) -> str:
    return path.replace("{id}", "0123abcd").replace("{ref}", "+16505551234").replace("{job}", "j0b")


async def test_the_console_is_off_in_production_unless_asked(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET, config="accounts.yaml")
    client = await aiohttp_client(create_app(rt, role="serve"))
    assert (await client.get("/console/signin")).status == 404


async def test_every_page_refuses_without_a_session(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    for method, path, _, _ in PAGES:
        resp = await client.request(method, concrete(path), allow_redirects=False)
        if method == "GET":
            assert resp.status == 303, path
            assert resp.headers["Location"].startswith("/console/signin"), path
        else:
            assert resp.status == 401, path
    # a forged cookie is no session either
    client.session.cookie_jar.update_cookies({COOKIE: "abc.ZGVm"})
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303


async def test_every_page_refuses_a_token_without_its_scope(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    for method, path, scope, _ in PAGES:
        if scope is None:
            continue
        client.session.cookie_jar.clear()
        assert (await sign_in(client, token(*(s for s in EVERY if s != scope)))).status == 303
        data = {"csrf": await csrf_of(client)} if scope != "deliveries:read" else {}
        if method == "POST" and not data:
            continue  # a POST needing deliveries:read does not exist
        resp = await client.request(method, concrete(path), data=data, allow_redirects=False)
        assert resp.status == 403, (path, scope)
        assert scope in await resp.text()


async def test_sign_in_sets_a_strict_cookie_bound_to_the_token(
    make_runtime, aiohttp_client
) -> None:
    client = await console(make_runtime, aiohttp_client)
    resp = await sign_in(client, token(*EVERY))
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    cookie = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    age = re.search(r"Max-Age=(\d+)", cookie)
    assert age is not None
    max_age = int(age[1])
    assert 0 < max_age <= 600  # the token's remaining life (600 s)
    [session] = await redis_of(client.rt).keys("deskbridge:console:session:*")
    assert 0 < await redis_of(client.rt).ttl(session) <= 600
    assert SECRET not in cookie and "ops@test" not in cookie  # sealed, not readable
    page = await client.get("/console/")
    assert page.status == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"


async def test_bad_tokens_and_stale_forms_do_not_sign_in(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    assert (await sign_in(client, "not.a.token")).status == 401
    expired = mint(
        SECRET, algorithm="HS256", subject="x", scopes=EVERY, ttl_seconds=1, audience="x"
    )
    assert (await sign_in(client, expired)).status == 401  # wrong audience
    resp = await client.post(
        "/console/signin", data={"csrf": "guess", "token": token(*EVERY)}, allow_redirects=False
    )
    assert resp.status == 403
    assert await redis_of(client.rt).keys("deskbridge:console:session:*") == []


async def test_csrf_is_required_on_every_form(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    [dead] = await dead_letters(client.rt, 1)
    await sign_in(client, token(*EVERY))
    for data in ({}, {"csrf": "wrong"}):
        resp = await client.post(
            "/console/deliveries/replay", data={**data, "id": dead, "confirmed": "1"}
        )
        assert resp.status == 403
    assert (await client.rt.deliveries.get("acme", dead)).state is DeliveryState.DEAD
    assert await client.rt.audit.read(limit=10) == ([], None)
    # with the session's token it goes through, and is audited as the API would
    resp = await client.post(
        "/console/deliveries/replay",
        data={"csrf": await csrf_of(client), "id": dead, "confirmed": "1"},
    )
    assert resp.status == 200
    assert (await client.rt.deliveries.get("acme", dead)).state is DeliveryState.PENDING
    entries, _ = await client.rt.audit.read(limit=10)
    assert [(x.who, x.action, x.count) for x in entries] == [("ops@test", "deliveries.replay", 1)]


async def test_sign_out_and_revocation_end_the_session(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    await sign_in(client, token(*EVERY))
    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))[COOKIE].value
    resp = await client.post(
        "/console/signout", data={"csrf": await csrf_of(client)}, allow_redirects=False
    )
    assert resp.status == 303
    client.session.cookie_jar.update_cookies({COOKIE: stolen})  # a copy of the cookie
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303 and "why=ended" in resp.headers["Location"]

    # the token ends (revoked, or expired: the session record lives only as long)
    tok = token(*EVERY)
    await sign_in(client, tok)
    assert (await client.get("/console/", allow_redirects=False)).status == 200
    from jose import jwt

    claims = jwt.get_unverified_claims(tok)
    await client.rt.revocations.revoke_token(claims["jti"], claims["exp"])
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303 and "why=expired" in resp.headers["Location"]
    assert await redis_of(client.rt).keys("deskbridge:console:session:*") == []


async def test_a_sign_in_link_works_once(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    link = token("deliveries:read", LINK_SCOPE)
    assert (await sign_in(client, link)).status == 303
    client.session.cookie_jar.clear()
    resp = await sign_in(client, link)
    assert resp.status == 401 and "already used" in await resp.text()


async def test_no_sealed_field_in_pages_without_contacts_read(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    [dead] = await dead_letters(rt, 1, thread="987654321")
    await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana Secret")
    await rt.conversations.observe_contact("acme", tg("987654321", "ann@example.com"), "Ann")
    scopes = [s for s in EVERY if s not in ("contacts:read", "contacts:write")]
    await sign_in(client, token(*scopes))
    pages = ["/console/", "/console/deliveries", f"/console/deliveries/{dead}", "/console/events"]
    pages += ["/console/audit", "/console/deliveries/bulk?action=replay"]
    for path in pages:
        resp = await client.get(path)
        assert resp.status == 200, path
        text = await resp.text()
        assert len(text.encode()) < 200_000, path
        for secret in ("message 1", "987654321", "16505551234", "Ana Secret", "ann@example"):
            assert secret not in text, (path, secret)
    resp = await client.get("/console/contacts?q=%2B16505551234&account=acme")
    assert resp.status == 403
    assert "16505551234" not in await resp.text()


async def test_contacts_page_draws_the_graph_and_decides(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    from deskbridge.schemas import Identity

    carol, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="email", value="carol@example.com", strength="strong", source="dmarc"),),
        "Carol",
    )
    claim, _ = await rt.conversations.observe_contact("acme", tg("77", "carol@example.com"), "C")
    await sign_in(client, token(*EVERY))
    page = await client.get("/console/contacts?q=telegram%3A77&account=acme")
    text = await page.text()
    assert "<svg" in text and text.count('class="identity"') == 1
    assert "Merge suggestions (1)" in text
    resp = await client.post(
        "/console/contacts/decide",
        data={
            "csrf": await csrf_of(client),
            "account": "acme",
            "a": carol.id,
            "b": claim.id,
            "decision": "accept",
        },
    )
    assert resp.status == 200
    text = await resp.text()
    # back on the contact, now with both identities
    assert "Merge suggestions (0)" in text and text.count('class="identity"') == 2
    page = await client.get("/console/contacts?q=telegram%3A77&account=acme")
    assert (await page.text()).count('class="identity"') == 2
    entries, _ = await rt.audit.read(limit=5)
    assert entries[0].action == "contacts.accept" and entries[0].who == "ops@test"
    assert keys.AUDIT  # the same stream the API writes


def test_console_link_prints_a_one_time_link(monkeypatch) -> None:
    from click.testing import CliRunner
    from jose import jwt

    from deskbridge.cli.main import cli

    monkeypatch.setenv("DESKBRIDGE_ADMIN_JWT_SECRET", SECRET)
    result = CliRunner().invoke(
        cli,
        ["console", "link", "--scope", "deliveries:read", "--url", "http://gw.test:8080/"],
    )
    assert result.exit_code == 0, result.output
    url, _, tok = result.output.strip().partition("#")
    assert url == "http://gw.test:8080/console/signin"
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"], audience="deskbridge-admin")
    assert claims["scope"].split() == ["deliveries:read", LINK_SCOPE]
    assert SECRET not in result.output


async def test_the_overview_charts_first_replies_and_health_per_channel(
    make_runtime, aiohttp_client
) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    import time

    # what the worker records: messages, first replies, a platform check that failed
    rt.metrics.messages.labels("acme", "telegram", "inbound").inc(3)
    for seconds in (30, 240, 5000):
        rt.metrics.first_response.labels("acme", "telegram", "en").observe(seconds)
    rt.metrics.channel_health.labels("acme", "telegram", "credentials_valid").set(0)
    await rt.deliveries.report_problem("acme", "desk sandbox", "HTTP 401 from the desk")
    # a customer waits (Redis: the same figure behind `deskbridge serve` alone)
    await rt.service.mark_waiting("acme", "c1", "telegram", time.time() - 90)
    await sign_in(client, token(*EVERY))
    resp = await client.get("/console/")
    text = await resp.text()
    assert resp.status == 200 and len(text.encode()) < 200_000
    chart = re.search(r'<svg[^>]*aria-labelledby="(t-first-reply[^"]*)".*?</svg>', text)
    assert chart is not None and 'class="bar-p50"' in chart[0] and 'class="bar-p90"' in chart[0]
    # three samples: the percentiles are known to their histogram buckets, and say so
    # (issue 21: no interpolated "3 min" for a 240 s reply)
    assert "<title>median: 1 min to 5 min</title>" in chart[0]
    assert "<title>90th percentile: 60 min to 2 h</title>" in chart[0]
    health = text[text.index("<h2>Channel health</h2>") :]
    rows = re.findall(r"<tr>(.*?)</tr>", health)
    telegram = next(r for r in rows if "<td>telegram</td>" in r)
    desk = next(r for r in rows if "desk sandbox" in r)
    assert "failing" in telegram and "credentials refused" in telegram
    assert "failing" in desk and "HTTP 401 from the desk" in desk
    service = text[text.index("<h2>Service</h2>") : text.index("<h2>Channel health</h2>")]
    assert re.search(
        r"<td>Telegram</td><td class=num>3</td><td class=num>0</td><td class=num>1</td>", service
    )
    assert "deskbridge serve" in service  # says where a serve-only gateway's figures are
    assert "<div class=figure><b>1</b><span>Customers waiting</span>" in text

    client.session.cookie_jar.clear()
    await sign_in(client, token("deliveries:read"))
    text = await (await client.get("/console/")).text()
    assert "Needs the <code>ops:read</code> scope" in text and "HTTP 401 from the desk" not in text


async def _bulk_settled(client) -> None:
    """Wait for the gateway's bulk tasks (they run on this loop)."""
    import asyncio

    from deskbridge.gateway.console.bulk import BULK_TASKS

    await asyncio.gather(*client.server.app[BULK_TASKS].tasks)


async def test_bulk_replay_without_javascript_runs_in_batches_with_a_progress_page(
    make_runtime, aiohttp_client
) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    dead = await dead_letters(rt, 3)
    await sign_in(client, token(*EVERY))
    resp = await client.post(
        "/console/deliveries/replay",
        data={"csrf": await csrf_of(client), "state": "failed", "confirmed": "1"},
        allow_redirects=False,
    )
    assert resp.status == 303
    where = resp.headers["Location"]
    assert re.fullmatch(r"/console/bulk/[\w-]+", where)
    await _bulk_settled(client)
    page = await client.get(where)
    text = await page.text()
    assert page.status == 200 and "Done: 3 replayed, 0 skipped, 0 not found." in text
    assert 'http-equiv="refresh"' not in text and '<progress value="3" max="3"' in text
    for ident in dead:
        assert (await rt.deliveries.get("acme", ident)).state is DeliveryState.PENDING
    entries, _ = await rt.audit.read(limit=5)
    assert [(x.who, x.action, x.count) for x in entries] == [("ops@test", "deliveries.replay", 3)]
    job = where.rsplit("/", 1)[1]
    found = await rt.console.bulk.get(job)
    assert found is not None and found.left == 0 and found.state == "done"
    assert 0 < await redis_of(rt).ttl(keys.console_bulk(job)) <= 86_400

    # another operator does not see it
    from .test_admin_api import AUD

    client.session.cookie_jar.clear()
    other = mint(
        SECRET, algorithm="HS256", subject="eve@test", scopes=EVERY, ttl_seconds=600, audience=AUD
    )
    await sign_in(client, other)
    assert (await client.get(where)).status == 404


async def test_a_running_bulk_job_refreshes_and_a_stalled_one_resumes(
    make_runtime, aiohttp_client
) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    dead = await dead_letters(rt, 2)
    await sign_in(client, token(*EVERY))
    job = await rt.console.bulk.open("ops@test", "discard", "spam", [*dead, "0" * 32])
    page = await client.get(f"/console/bulk/{job}")
    text = await page.text()
    assert '<meta http-equiv="refresh" content="1">' in text and "Working: 0 of 3" in text
    assert "Resume" not in text and len(text.encode()) < 200_000
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]

    # its gateway went away: no batch for over a minute
    await redis_of(rt).execute_command("HSET", keys.console_bulk(job), "updated_at", "1000")
    text = await (await client.get(f"/console/bulk/{job}")).text()
    assert "Stalled after 0 of 3" in text and 'http-equiv="refresh"' not in text
    assert "Resume the 3 left" in text
    resp = await client.post(
        f"/console/bulk/{job}/resume",
        data={"csrf": await csrf_of(client)},
        allow_redirects=False,
    )
    assert resp.status == 303
    await _bulk_settled(client)
    text = await (await client.get(f"/console/bulk/{job}")).text()
    assert "Done: 2 discarded, 0 skipped, 1 not found." in text
    for ident in dead:
        d = await rt.deliveries.get("acme", ident)
        assert d.state is DeliveryState.DISCARDED and d.discard_reason == "spam"


async def test_a_bulk_job_stops_when_its_token_ends(make_runtime, aiohttp_client) -> None:
    import time

    from deskbridge.gateway.admin.auth import Principal
    from deskbridge.gateway.console.bulk import run

    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    dead = await dead_letters(rt, 1)
    who = Principal(sub="ops@test", scopes=frozenset(EVERY), jti="j1", issued_at=int(time.time()))
    job = await rt.console.bulk.open("ops@test", "replay", "", dead)
    await run(rt, who, int(time.time()) - 1, job)
    found = await rt.console.bulk.get(job)
    assert found.state == "stopped" and "expired" in found.error and found.left == 1
    await rt.revocations.revoke_token("j1", int(time.time()) + 600)
    await run(rt, who, int(time.time()) + 600, job)
    found = await rt.console.bulk.get(job)
    assert found.state == "stopped" and "revoked" in found.error and found.done == 0
    assert (await rt.deliveries.get("acme", dead[0])).state is DeliveryState.DEAD


async def test_the_script_starts_the_same_job_and_polls_it_as_json(
    make_runtime, aiohttp_client
) -> None:
    client = await console(make_runtime, aiohttp_client)
    rt = client.rt
    dead = await dead_letters(rt, 2)
    await sign_in(client, token(*EVERY))
    confirm = await (
        await client.get("/console/deliveries/bulk?action=discard&state=failed")
    ).text()
    assert "Discard 2" in confirm and dead[0] not in confirm  # the count, never the ids
    resp = await client.post(
        "/console/deliveries/discard",
        data={
            "csrf": await csrf_of(client),
            "state": "failed",
            "confirmed": "1",
            "reason": "spam",
            "format": "json",
        },
    )
    started = await resp.json()
    assert resp.status == 200 and started["total"] == 2
    await _bulk_settled(client)
    resp = await client.get(started["progress"])
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {
        "state": "done",
        "error": "",
        "verb": "discarded",
        "total": 2,
        "done": 2,
        "changed": 2,
        "skipped": 0,
        "missing": 0,
    }
    for ident in dead:
        assert (await rt.deliveries.get("acme", ident)).state is DeliveryState.DISCARDED


async def test_a_listener_problem_is_a_health_row_of_its_own(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    await client.rt.deliveries.report_problem("acme", "smtp listener", "0.0.0.0:25: in use")
    await sign_in(client, token(*EVERY))
    text = await (await client.get("/console/")).text()
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", text) if "smtp listener" in r)
    assert "failing" in row and "0.0.0.0:25: in use" in row
