"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright
with the system browser): sign in, filter deliveries, replay a dead letter end to end,
accept a merge suggestion and see the graph change, sign out. No console error (a CSP
violation is one) on any page. Screenshots of each page go to ``.test-output/console/``
(or ``$DESKBRIDGE_TEST_OUTPUT/console``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from deskbridge.gateway import create_app
from deskbridge.schemas import DeliveryState, Identity

from .conftest import drain
from .test_admin_api import SECRET, dead_letters, token
from .test_admin_contacts import tg, wa
from .test_console import EVERY
from .test_gateway import signed, update

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)"),
    pytest.mark.timeout(120),
]

OUT = Path(os.environ.get("DESKBRIDGE_TEST_OUTPUT", ".test-output")) / "console"


async def test_an_operator_session_in_chromium(make_runtime, aiohttp_server) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET, console=True)
    dead = await dead_letters(rt, 2)  # the fake desk refused twice, then recovers
    await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana")
    carol, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="email", value="carol@example.com", strength="strong", source="dmarc"),),
        "Carol",
    )
    await rt.conversations.observe_contact("acme", tg("77", "carol@example.com"), "C")
    server = await aiohttp_server(create_app(rt, role="serve"))
    base = str(server.make_url("")).rstrip("/")
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1366, "height": 850})
        page.set_default_timeout(10_000)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))

        async def shot(name: str) -> None:
            await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)

        # sign in: the token in the fragment, as a `deskbridge console link` gives it
        await page.goto(f"{base}/console/signin")
        await shot("signin")
        await page.goto("about:blank")  # a new document, as a link opened from a terminal
        await page.goto(f"{base}/console/signin#{token(*EVERY)}")
        await page.wait_for_url(f"{base}/console/")
        assert "#" not in page.url
        await page.get_by_role("heading", name="Overview").wait_for()
        await shot("overview")

        # filter deliveries by state
        await page.get_by_role("link", name="Deliveries", exact=True).click()
        await page.get_by_label("State").select_option("failed")
        await page.get_by_role("button", name="Filter").click()
        await page.wait_for_url("**state=failed**")
        rows = page.locator("tbody tr")
        assert await rows.count() == 2
        await shot("deliveries")

        # replay one dead letter from its page; the desk recovers and it is delivered
        await page.locator(f'a[href="/console/deliveries/{dead[0]}"]').click()
        await shot("delivery")
        await page.get_by_role("button", name="Replay").click()
        await page.get_by_text("1 done").wait_for()
        await drain(rt)
        await page.goto(f"{base}/console/deliveries/{dead[0]}")
        assert await page.locator(".state").first.inner_text() == "delivered"
        assert (await rt.deliveries.get("acme", dead[0])).state is DeliveryState.DELIVERED

        # bulk: replay every remaining failure after the confirmation, with progress
        await page.goto(f"{base}/console/deliveries?state=failed")
        await page.get_by_role("button", name="Replay every match…").click()
        await page.get_by_text("1 dead letters would be replayed").wait_for()
        await shot("replay-confirm")
        await page.get_by_role("button", name="Replay 1").click()
        await page.get_by_text("Done: 1 replayed").wait_for()
        await drain(rt)
        assert (await rt.deliveries.get("acme", dead[1])).state is DeliveryState.DELIVERED
        await page.goto(f"{base}/console/")  # the overview with the delivered messages
        await shot("overview")

        # contacts: the graph, then accept the suggestion and see the graph change
        await page.get_by_role("link", name="Contacts", exact=True).click()
        await page.get_by_label("Phone, email, channel:id or contact id").fill("telegram:77")
        await page.get_by_role("button", name="Find").click()
        graph = page.locator("#identity-graph .identity")
        assert await graph.count() == 1
        await shot("contacts")
        await page.get_by_role("button", name="Accept merge", exact=False).click()
        await page.wait_for_url(f"**q={carol.id}**")
        assert await graph.count() == 2
        await shot("contacts-merged")

        # a kept raw request, listed and shown (the body: this session has contacts:read)
        async with aiohttp.ClientSession() as http:
            sent = await http.post(
                f"{base}/webhooks/telegram/acme", data=update(5001), headers=signed()
            )
            assert sent.status == 200
        await page.goto(f"{base}/console/events")
        await shot("events")
        await page.locator('a[href^="/console/events/"]').first.click()
        await page.get_by_role("heading", name="Body").wait_for()
        assert "hello" in await page.locator("pre.raw").inner_text()
        await shot("event")
        await page.goto(f"{base}/console/audit")
        await shot("audit")
        assert await page.get_by_text("contacts.accept").count() == 1

        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/console/signin?why=out")
        await page.goto(f"{base}/console/deliveries")
        assert "/console/signin" in page.url
        await browser.close()
    assert problems == []


async def test_bulk_replay_without_javascript(make_runtime, aiohttp_server) -> None:
    """JavaScript off: the bulk replay runs as the gateway's task and the progress page
    reloads itself (a meta refresh) until it says done."""
    rt = make_runtime(admin_jwt_secret=SECRET, console=True)
    dead = await dead_letters(rt, 2)
    server = await aiohttp_server(create_app(rt, role="serve"))
    base = str(server.make_url("")).rstrip("/")
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = await browser.new_context(
            java_script_enabled=False, viewport={"width": 1366, "height": 850}
        )
        page = await context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        # signing in by pasting the token needs no script
        await page.goto(f"{base}/console/signin")
        await page.get_by_label("Admin token").fill(token(*EVERY))
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Overview").wait_for()
        await page.goto(f"{base}/console/deliveries?state=failed")
        await page.get_by_role("button", name="Replay every match…").click()
        await page.get_by_role("button", name="Replay 2").click()
        await page.wait_for_url("**/console/bulk/**")
        # the page reloads itself until the job is done
        await page.get_by_text("Done: 2 replayed, 0 skipped, 0 not found.").wait_for()
        await page.screenshot(path=str(OUT / "bulk-progress.png"), full_page=True)
        await browser.close()
    await drain(rt)
    for ident in dead:
        assert (await rt.deliveries.get("acme", ident)).state is DeliveryState.DELIVERED
    assert problems == []
