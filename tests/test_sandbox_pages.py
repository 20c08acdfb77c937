"""The sandbox desk's pages in a real headless Chromium: a ticket's page updates itself
after *Send reply* under the strict CSP, lists only its own ticket's channel calls, shows
SIP and email calls readably, and never overflows sideways."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
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
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromedriver are not installed (Debian packages chromium and "
    "chromium-driver; `make test` installs them)",
)

# a trunk's long SIP URIs and a long unbroken line: what used to push the card sideways
LONG_USER = "+16505551234"
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


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=900,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(fn: Callable[[], Any]) -> Any:
    """Selenium blocks: it runs in a thread while the gateway and worker serve here."""
    return await asyncio.to_thread(fn)


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 30) -> Any:
    """Wait for a condition in the page (a wait, not a timed assertion: the bound only
    keeps a broken page from hanging the run)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


async def eventually(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], Any], tries: int = 400
) -> None:
    """Wait until the worker got this far (bounded, so a broken flow fails the test)."""
    for _ in range(tries):
        if done(await read()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never got there")


def csp_violations(driver: Any) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
    ]


OVERFLOW = """
for (const d of document.querySelectorAll('details')) { d.open = true; }
const wide = [...document.querySelectorAll('section')]
    .filter(s => s.scrollWidth > s.clientWidth + 1)
    .map(s => s.id || s.querySelector('h2,h3')?.textContent);
const page = document.documentElement;
return {wide, page: page.scrollWidth > page.clientWidth + 1};
"""


async def test_the_ticket_page_updates_itself_and_shows_only_its_calls(
    make_runtime, aiohttp_server, browser
) -> None:
    from selenium.webdriver.common.by import By

    rt = make_runtime(YAML)
    server = await aiohttp_server(create_app(rt, role="run"))
    base = str(server.make_url("")).rstrip("/")
    [listener] = await start_sip_listeners(rt)
    worker = asyncio.create_task(run_worker(rt, TEST_REDIS_URL))
    try:
        dest = listener.addresses()["udp"]
        status = await send_sample(
            dest, text="Where is my parcel? " + "x" * 300, sender=f"tel:{LONG_USER}", target=TARGET
        )
        assert status == 200
        client_body, headers = mailgun(mail("m1@example.com", "Refund please", "Order 42."))
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{base}/webhooks/email/acme", data=client_body, headers=headers)
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

        page = f"{base}/sandbox/acme/tickets/{sip.id}"
        await in_browser(lambda: browser.get(page))
        sent_text = await in_browser(lambda: browser.find_element(By.ID, "sent").text)
        assert "Nothing sent for this ticket yet" in sent_text
        assert "Refund on its way" not in sent_text

        def send_reply() -> None:
            browser.find_element(By.ID, "text").send_keys("Hello back, it ships today.")
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait_for(browser, lambda d: d.current_url == page)
            # marks this load: a reload (by hand or meta refresh) would drop both
            browser.execute_script("window.__loaded_once = true;")
            browser.find_element(By.ID, "text").send_keys("a draft")

        await in_browser(send_reply)

        def updated(d: Any) -> bool:
            return "Hello back, it ships today." in d.find_element(By.ID, "sent").text

        await in_browser(lambda: wait_for(browser, updated))
        assert await in_browser(lambda: browser.execute_script("return window.__loaded_once"))
        draft = await in_browser(lambda: browser.find_element(By.ID, "text").get_attribute("value"))
        assert draft == "a draft"  # the form kept what was being typed

        sent_text = await in_browser(lambda: browser.find_element(By.ID, "sent").text)
        assert "Refund on its way" not in sent_text  # the email ticket's call
        assert "SIP" in sent_text and "MESSAGE" in sent_text
        assert "Via:" not in sent_text and "CSeq" not in sent_text  # the wire form is folded
        layout = await in_browser(lambda: browser.execute_script(OVERFLOW))
        assert layout == {"wide": [], "page": False}
        wire = await in_browser(lambda: browser.find_element(By.CSS_SELECTOR, "#sent .wire").text)
        assert wire.startswith("MESSAGE ") and "Call-ID:" in wire

        # the email ticket: its own call only, Subject shown, headers folded
        await in_browser(lambda: browser.get(f"{base}/sandbox/acme/tickets/{email.id}"))
        sent_text = await in_browser(lambda: browser.find_element(By.ID, "sent").text)
        assert "Refund on its way." in sent_text and "Re: Refund please" in sent_text
        assert "Hello back" not in sent_text and "In-Reply-To" not in sent_text
        layout = await in_browser(lambda: browser.execute_script(OVERFLOW))
        assert layout == {"wide": [], "page": False}
        heading = await in_browser(lambda: browser.find_element(By.TAG_NAME, "h2").text)
        assert "Refund please" in heading  # the mail's Subject is the ticket's

        # the index lists every call, each with its ticket, and does not overflow either
        await in_browser(lambda: browser.get(f"{base}/sandbox/"))
        links = await in_browser(
            lambda: [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".calls a")]
        )
        assert sorted(links) == sorted([f"#{sip.id}", f"#{email.id}"])
        layout = await in_browser(lambda: browser.execute_script(OVERFLOW))
        assert layout == {"wide": [], "page": False}
        assert await in_browser(lambda: csp_violations(browser)) == []
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await listener.close()
