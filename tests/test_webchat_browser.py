"""The widget in a real headless Chromium (Debian's ``chromium`` through Playwright): a
visitor opens the demo page, sends a message, sees the agent's reply arrive live, keeps
chatting across a gateway restart (the message written while it was down is resent and
filed once), a visitor the site verified joins the contact of their email, and a
visitor sees their message delivered and read and the agent typing from the sandbox
page, and a visitor attaches a picture that the sandbox desk shows (a refused type is
said so; an agent's link that is not http(s) is never shown), and the script's own
filter: whatever frame reaches it, a file without an http(s) link is said to be
unavailable, never linked.
Screenshots go to ``.test-output/webchat/`` (or ``$DESKBRIDGE_TEST_OUTPUT/webchat``)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.schemas import AgentReply, Channel, Desk, Identity

from .conftest import drain

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt install chromium)"),
    pytest.mark.timeout(120),
]

OUT = Path(os.environ.get("DESKBRIDGE_TEST_OUTPUT", ".test-output")) / "webchat"
IDENTITY = "webchat-identity-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _yaml(port: int) -> str:
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: webchat
        sandbox: true
        secret: webchat-visitor-secret-0123456789
        identity_secret: {IDENTITY}
        allowed_origins: ["http://127.0.0.1:{port}"]
"""


async def _served(make_runtime: Any, aiohttp_server: Any) -> tuple[Any, str]:
    """A runtime with the widget account, served on a free port; its base URL."""
    port = _free_port()
    rt = make_runtime(_yaml(port))
    await aiohttp_server(create_app(rt, role="serve"), port=port)
    OUT.mkdir(parents=True, exist_ok=True)
    return rt, f"http://127.0.0.1:{port}"


async def _watched(browser: Any, problems: list[str], *, expected: str) -> Any:
    """A new page whose script errors, and console errors but the ``expected`` kind, go
    to ``problems``."""
    page = await browser.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and expected not in m.text else None,
    )
    return page


async def _agent_says(rt: Any, text: str, n: int) -> None:
    [ticket] = await rt.sandbox.tickets("acme")
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key=f"browser-r{n}",
        ticket_id=ticket.id,
        external_id=f"browser-a{n}",
        text=text,
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)


async def _visitor_says(page: Any, url: str, text: str) -> None:
    """Opens the widget on the page at ``url`` and sends ``text``, until it is stored."""
    await page.goto(url)
    await page.get_by_role("button", name="Chat with us").click()
    await page.fill("#dbc-input", text)
    await page.click("#dbc-send")
    await page.wait_for_selector(".dbc-visitor[data-state=sent]")


async def test_a_visitor_chats_across_a_gateway_restart(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    port = _free_port()
    rt = make_runtime(_yaml(port))
    server = await aiohttp_server(create_app(rt, role="serve"), port=port)
    base = f"http://127.0.0.1:{port}"
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await _watched(browser, problems, expected="WebSocket")  # the restart's
        await page.goto(f"{base}/sandbox/widget")
        await page.get_by_role("button", name="Chat with us").click()
        await page.wait_for_selector("#deskbridge-chat[data-status=connected]")

        # send; the message is acknowledged and filed
        await page.fill("#dbc-input", "Where is my order?")
        await page.click("#dbc-send")
        await page.wait_for_selector(".dbc-visitor[data-state=sent]")
        await drain(rt)
        [ticket] = await rt.sandbox.tickets("acme")
        assert ticket.channel == "webchat"

        # the agent's reply arrives live
        await _agent_says(rt, "It ships today.", 1)
        await page.wait_for_selector(".dbc-agent >> text=It ships today.")
        await page.screenshot(path=str(OUT / "live.png"))

        # the gateway restarts; a message written meanwhile waits, then goes once
        await server.close()
        await page.wait_for_selector("#deskbridge-chat[data-status=reconnecting]")
        await page.fill("#dbc-input", "Are you there?")
        await page.click("#dbc-send")
        assert await page.locator(".dbc-visitor[data-state=pending]").count() == 1
        rt2 = make_runtime(_yaml(port))
        await aiohttp_server(create_app(rt2, role="serve"), port=port)
        await page.wait_for_selector("#deskbridge-chat[data-status=connected]", timeout=30_000)
        await page.wait_for_selector(".dbc-visitor[data-state=sent] >> text=Are you there?")
        await drain(rt2)
        await _agent_says(rt2, "Yes, still here.", 2)
        await page.wait_for_selector(".dbc-agent >> text=Yes, still here.")
        await page.screenshot(path=str(OUT / "after-restart.png"))
        [ticket] = await rt2.sandbox.tickets("acme")
        assert len([m for m in ticket.messages if "Are you there?" in m.text]) == 1

        # the visitor comes back later: the whole conversation, once each
        await page.reload()
        await page.get_by_role("button", name="Chat with us").click()
        await page.wait_for_selector(".dbc-agent >> text=Yes, still here.")
        texts = await page.locator(".dbc-msg").all_inner_texts()
        assert texts == [
            "Where is my order?",
            "It ships today.",
            "Are you there?",
            "Yes, still here.",
        ]
        await browser.close()
    assert problems == []


async def test_a_verified_visitor_joins_their_email_contact(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    port = _free_port()
    rt = make_runtime(_yaml(port))
    carol, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="email", value="carol@example.com", strength="strong", source="dmarc"),),
        "Carol",
    )
    await aiohttp_server(create_app(rt, role="serve"), port=port)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        page.set_default_timeout(15_000)
        url = f"http://127.0.0.1:{port}/sandbox/widget?email=carol@example.com"
        await _visitor_says(page, url, "Hi, it is Carol")
        await browser.close()
    await drain(rt)
    web, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="channel_user", value="u:carol@example.com", channel=Channel.WEBCHAT),),
        None,
    )
    assert web.id == carol.id


async def test_the_visitor_sees_delivered_read_and_the_agent_typing(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    rt, base = await _served(make_runtime, aiohttp_server)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        visitor = await browser.new_page()
        agent = await browser.new_page()
        for page in (visitor, agent):
            page.set_default_timeout(15_000)
        await _visitor_says(visitor, f"{base}/sandbox/widget", "Do you ship to Spain?")
        await drain(rt)  # filed at the desk
        await visitor.wait_for_selector(".dbc-visitor[data-receipt=delivered]")

        # the agent opens the ticket in the sandbox console: read
        [ticket] = await rt.sandbox.tickets("acme")
        await agent.goto(f"{base}/sandbox/acme/tickets/{ticket.id}")
        await visitor.wait_for_selector(".dbc-visitor[data-receipt=read]")

        # the agent types in the reply box: the visitor sees it
        assert await visitor.locator("#dbc-typing").is_hidden()
        await agent.locator("#text").press_sequentially("Yes, we do", delay=30)
        await visitor.wait_for_selector("#dbc-typing >> text=Agent is typing…")
        await visitor.screenshot(path=str(OUT / "typing.png"))

        # the reply arrives and the typing ends with it
        await agent.click("text=Send reply")
        await agent.wait_for_selector(".msg.agent >> text=Yes, we do")
        await drain(rt)
        await visitor.wait_for_selector(".dbc-agent >> text=Yes, we do")
        await visitor.wait_for_selector("#dbc-typing", state="hidden", timeout=2_000)
        await visitor.screenshot(path=str(OUT / "read.png"))
        await browser.close()


def _png(width: int = 96, height: int = 64) -> bytes:
    """A real (decodable) PNG: a grey square."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_a_visitor_attaches_a_file_and_the_desk_has_it(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    rt, base = await _served(make_runtime, aiohttp_server)
    png = _png()
    problems: list[str] = []

    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await _watched(browser, problems, expected="Failed to load resource")  # 415
        await page.goto(f"{base}/sandbox/widget")
        await page.get_by_role("button", name="Chat with us").click()
        await page.wait_for_selector("#deskbridge-chat[data-status=connected]")
        assert await page.locator("#dbc-attach").is_visible()

        # a file the site does not take is refused in the transcript, nothing is sent
        await page.set_input_files(
            "#dbc-file",
            files=[{"name": "tool.exe", "mimeType": "image/png", "buffer": b"MZ\x90\0"}],
        )
        refused = page.locator(".dbc-visitor[data-state=refused]")
        await refused.wait_for()
        assert "not accepted" in await refused.inner_text()

        # a picture: uploaded, acknowledged, shown from this gateway
        await page.set_input_files(
            "#dbc-file", files=[{"name": "receipt.png", "mimeType": "image/png", "buffer": png}]
        )
        await page.wait_for_selector(".dbc-visitor[data-state=sent] a.dbc-file img")
        await page.wait_for_function(
            "document.querySelector('#deskbridge-chat .dbc-file img').naturalWidth === 96"
        )
        await page.screenshot(path=str(OUT / "attachment.png"))

        # the sandbox desk has the file on the ticket
        await drain(rt)
        [ticket] = await rt.sandbox.tickets("acme")
        [filed] = [m for m in ticket.messages if m.attachments]
        assert filed.attachments == (f"receipt.png (image/png, {len(png)} bytes)",)
        desk = await browser.new_page()
        await desk.goto(f"{base}/sandbox/acme/tickets/{ticket.id}")
        await desk.get_by_text(f"receipt.png (image/png, {len(png)} bytes)").wait_for()
        await desk.screenshot(path=str(OUT / "attachment-at-the-desk.png"))

        # an agent's file links: only http(s) is ever a link (the gateway leaves the rest
        # out; the script's own filter is tested on its own below)
        token = await page.evaluate(
            "JSON.parse(localStorage.getItem('deskbridge-chat:acme:visitor'))"
        )
        body = {
            "role": "agent",
            "text": "Here are the papers",
            "author": "Ana",
            "at": datetime.now(UTC).isoformat(),
            "files": [
                {"url": "javascript:alert(document.domain)", "name": "evil"},
                {"url": "https://files.example.com/terms.pdf", "name": "terms.pdf"},
            ],
        }
        await rt.webchat.post("acme", token.partition(".")[0], body, client_id="r:t1", ttl_s=3600)
        agent = page.locator(".dbc-agent", has_text="Here are the papers")
        await agent.wait_for()
        hrefs = await agent.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert hrefs == ["https://files.example.com/terms.pdf"]

        # back later: the picture is in the history
        await page.reload()
        await page.get_by_role("button", name="Chat with us").click()
        await page.wait_for_selector(".dbc-agent >> text=Here are the papers")
        await page.wait_for_function(
            "document.querySelector('#deskbridge-chat .dbc-file img')?.naturalWidth === 96"
        )
        await browser.close()
    assert problems == []


_CATCH_SOCKET = """
const Real = window.WebSocket;
window.WebSocket = class extends Real {
  constructor(...args) { super(...args); window.__dbcSocket = this; }
};
"""


async def test_the_script_links_only_http_files_and_says_which_are_unavailable(
    make_runtime: Any, aiohttp_server: Any
) -> None:
    _, base = await _served(make_runtime, aiohttp_server)
    problems: list[str] = []
    files: list[Any] = [
        {"name": "no-link.pdf"},
        {"name": "evil", "url": "javascript:alert(document.domain)"},
        {"name": "page", "url": "data:text/html,<script>alert(1)</script>"},
        {"name": "empty", "url": ""},
        {"url": {"href": "https://files.example.com/x"}},
        None,
        {"name": "terms.pdf", "url": "https://files.example.com/terms.pdf"},
    ]
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await _watched(browser, problems, expected="no console error is expected")
        await page.add_init_script(_CATCH_SOCKET)
        await page.goto(f"{base}/sandbox/widget")
        await page.get_by_role("button", name="Chat with us").click()
        await page.wait_for_selector("#deskbridge-chat[data-status=connected]")

        # frames as if from the gateway, straight into the script's socket handler
        frames = [
            {"type": "message", "seq": 1000, "role": "agent", "text": "Files", "files": files},
            {"type": "message", "seq": 1001, "role": "agent", "text": "Odd", "files": {"a": 1}},
        ]
        await page.evaluate(
            "fs => fs.forEach(f => window.__dbcSocket.onmessage({data: JSON.stringify(f)}))",
            frames,
        )
        shown = page.locator(".dbc-agent", has_text="Files")
        await shown.wait_for()
        hrefs = await shown.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert hrefs == ["https://files.example.com/terms.pdf"]
        said = await shown.locator(".dbc-file-gone").all_inner_texts()
        clip = "\N{PAPERCLIP} "
        assert said == [
            f"{clip}no-link.pdf \N{EM DASH} file unavailable",
            f"{clip}evil \N{EM DASH} file unavailable",
            f"{clip}page \N{EM DASH} file unavailable",
            f"{clip}empty \N{EM DASH} file unavailable",
            f"{clip}file unavailable",
            f"{clip}file unavailable",
        ]
        assert await page.locator("#deskbridge-chat a[href*=undefined]").count() == 0
        odd = page.locator(".dbc-agent", has_text="Odd")
        await odd.wait_for()
        assert await odd.locator(".dbc-file").count() == 0
        await page.screenshot(path=str(OUT / "files-unavailable.png"))
        await browser.close()
    assert problems == []
