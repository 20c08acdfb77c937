"""The sandbox desk's pages in a real headless Chromium (Debian's ``chromium``, driven by
Playwright with the system browser, as the console's browser test is): a ticket's page
updates itself after *Send reply* under the strict CSP, lists only its own ticket's
channel calls, shows SIP and email calls readably, and never overflows sideways."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.pipeline import run_worker
from deskbridge.schemas import AgentReply, Desk

from .conftest import MAILGUN_KEY, TEST_REDIS_URL
from .test_e2e_email import mail, mailgun

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)"),
    pytest.mark.timeout(120),
]

TARGET = "sip:+14155550100@sip.acme.example"
YAML = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: sip
        listen: "127.0.0.1:0"
        transports: [udp]
        domains: [sip.acme.example]
        numbers: ["+14155550100"]
        trusted_peers: [127.0.0.1/32]
        sandbox: true
        timers: {{t1: 0.02, t2: 0.16, t4: 0.1}}
      - type: email
        address: support@acme.example
        inbound: mailgun
        mailgun_signing_key: "{MAILGUN_KEY}"
        sandbox: true
"""

# every <details> opened (the wire forms), then: which cards, and the page, are wider
# than their box
OVERFLOW = """() => {
  for (const d of document.querySelectorAll('details')) { d.open = true; }
  const wide = [...document.querySelectorAll('section')]
      .filter(s => s.scrollWidth > s.clientWidth + 1)
      .map(s => s.id || s.querySelector('h2,h3')?.textContent);
  const page = document.documentElement;
  return {wide, page: page.scrollWidth > page.clientWidth + 1};
}"""
FITS = {"wide": [], "page": False}


async def eventually(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], Any], tries: int = 400
) -> None:
    """Wait until the worker got this far (bounded, so a broken flow fails the test)."""
    for _ in range(tries):
        if done(await read()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never got there")


async def test_the_ticket_page_updates_itself_and_shows_only_its_calls(
    make_runtime, aiohttp_server
) -> None:
    rt = make_runtime(YAML)
    server = await aiohttp_server(create_app(rt, role="run"))
    base = str(server.make_url("")).rstrip("/")
    [listener] = await start_sip_listeners(rt)
    worker = asyncio.create_task(run_worker(rt, TEST_REDIS_URL))
    problems: list[str] = []
    try:
        # a long unbroken line: what used to push the card sideways
        text = "Where is my parcel? " + "x" * 300
        dest = listener.addresses()["udp"]
        assert await send_sample(dest, text=text, sender="tel:+16505551234", target=TARGET) == 200
        body, headers = mailgun(mail("m1@example.com", "Refund please", "Order 42."))
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{base}/webhooks/email/acme", data=body, headers=headers)
            assert resp.status == 200
        await eventually(lambda: rt.sandbox.tickets("acme"), lambda ts: len(ts) == 2)
        by_channel = {t.channel: t for t in await rt.sandbox.tickets("acme")}
        sip, email = by_channel["sip"], by_channel["email"]
        assert email.subject == "Email: Ana Lima: Refund please"

        # the email ticket's reply goes out first: the SIP ticket's page must not list it
        reply = AgentReply(
            account="acme",
            desk=Desk.SANDBOX,
            dedup_key="r-email",
            ticket_id=email.id,
            external_id="a-email",
            text="Refund on its way.",
            occurred_at=datetime.now(UTC),
        )
        await accept_replies(rt, "acme", "sandbox", None, [reply])
        await eventually(lambda: rt.sandbox.ticket("acme", email.id), lambda t: t.sent_ids)

        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            page.set_default_timeout(20_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            ticket_url = f"{base}/sandbox/acme/tickets/{sip.id}"
            await page.goto(ticket_url)
            sent = page.locator("#sent")
            assert "Nothing sent for this ticket yet" in await sent.inner_text()
            assert "Refund on its way" not in await sent.inner_text()

            await page.locator("#text").fill("Hello back, it ships today.")
            await page.get_by_role("button", name="Send reply").click()
            await page.wait_for_url(ticket_url)
            # marks this load: a reload (by hand or a meta refresh) would drop both
            await page.evaluate("() => { window.loadedOnce = true; }")
            await page.locator("#text").fill("a draft")

            # the worker sends the reply; the page shows it without being reloaded
            await sent.locator(".pre", has_text="Hello back, it ships today.").wait_for()
            assert await page.evaluate("() => window.loadedOnce") is True
            assert await page.locator("#text").input_value() == "a draft"

            shown = await sent.inner_text()
            assert "Refund on its way" not in shown  # the email ticket's call
            assert "SIP" in shown and "MESSAGE" in shown
            assert "Via:" not in shown and "CSeq" not in shown  # the wire form is folded
            assert await page.evaluate(OVERFLOW) == FITS
            wire = await sent.locator(".wire").inner_text()
            assert wire.startswith("MESSAGE ") and "Call-ID:" in wire

            # the email ticket: its own call only, its Subject shown, headers folded
            await page.goto(f"{base}/sandbox/acme/tickets/{email.id}")
            shown = await sent.inner_text()
            assert "Refund on its way." in shown and "Re: Refund please" in shown
            assert "Hello back" not in shown and "In-Reply-To" not in shown
            assert await page.evaluate(OVERFLOW) == FITS
            assert "Refund please" in await page.locator("h2").inner_text()

            # the index lists every call with its ticket, and does not overflow either
            await page.goto(f"{base}/sandbox/")
            links = await page.locator(".calls a").all_inner_texts()
            assert sorted(links) == sorted([f"#{sip.id}", f"#{email.id}"])
            assert await page.evaluate(OVERFLOW) == FITS
            await browser.close()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await listener.close()
    assert problems == []  # a CSP violation is a console error
