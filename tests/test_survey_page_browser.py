"""An email survey's score page in a real headless Chromium (Debian's ``chromium``,
driven by Playwright, as the sandbox pages' test is): it renders under its strict CSP
with no console error, and its form records the score and the comment once."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from deskbridge.gateway import create_app

from .conftest import drain
from .test_csat import email_survey, notes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)"),
    pytest.mark.timeout(120),
]


async def test_the_survey_page_records_a_score_and_comment_in_a_browser(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    rt, _, ticket, links = await email_survey(make_runtime)
    server = await aiohttp_server(create_app(rt, role="serve"))
    base = str(server.make_url("")).rstrip("/")
    problems: list[str] = []
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 400, "height": 800})
        page.set_default_timeout(20_000)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        await page.goto(base + links[0])  # 5
        assert "5 ⭐⭐⭐⭐⭐" in await page.locator(".score").inner_text()
        # the inline style is allowed by its hash: it applies (a blocked one would not)
        width = await page.evaluate(
            "() => getComputedStyle(document.querySelector('textarea')).boxSizing"
        )
        assert width == "border-box"
        await page.get_by_label("Anything to add? (optional)").fill("Solved in one reply")
        await page.get_by_role("button", name="Send").click()
        await page.get_by_text("Your answer is recorded").wait_for()
        # back and submitted again: recorded once
        await page.go_back()
        await page.get_by_role("button", name="Send").click()
        await page.get_by_text("answered already").wait_for()
        await browser.close()
    assert problems == []
    await drain(rt)
    assert await notes(rt) == [
        "Tags: csat_5",
        f"Customer satisfaction: 5/5 (survey by email after ticket {ticket} was solved, "
        'answered on its page). Comment: "Solved in one reply"',
    ]
