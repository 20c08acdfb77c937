"""The demo account's widget accepts the origins of the address deskbridge serves (host
and port from the settings or the command line, their loopback equivalents, the public
URL), and says so to ``simulate webchat`` in ``/sandbox/demo.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from deskbridge.cli.process import load
from deskbridge.config import WebchatConfig
from deskbridge.config.demo import served_origins
from deskbridge.flows import Runtime
from deskbridge.gateway import create_app
from deskbridge.schemas import Channel
from deskbridge.store import connect

from .conftest import TEST_REDIS_URL
from .conftest import test_settings as settings_for_test
from .test_webchat import _hello


def test_served_origins_are_the_ones_a_browser_sends() -> None:
    assert served_origins("127.0.0.1", 9000) == (
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
    )
    assert served_origins("0.0.0.0", 80) == (  # noqa: S104 - the listen address
        "http://127.0.0.1",
        "http://localhost",
        "http://[::1]",
    )
    assert served_origins("Bridge.Example.com", 8081, "https://chat.example.com:443/") == (
        "http://bridge.example.com:8081",
        "https://chat.example.com",
    )
    assert served_origins("fd00::5", 8080) == ("http://[fd00::5]:8080",)


async def test_the_demo_widget_accepts_the_address_deskbridge_serves(
    tmp_path: Path, aiohttp_client: Any, redis: Any
) -> None:
    # `deskbridge run --host 0.0.0.0 --port 9000` without an accounts file
    settings = settings_for_test(data_dir=tmp_path, host="0.0.0.0", port=9000)  # noqa: S104
    loaded = load(settings, None)
    cfg = loaded.accounts.accounts["demo"].channel(Channel.WEBCHAT)
    assert isinstance(cfg, WebchatConfig)
    assert cfg.allowed_origins == served_origins("0.0.0.0", 9000)  # noqa: S104
    conn = connect(TEST_REDIS_URL)
    async with httpx.AsyncClient() as http:
        rt = Runtime.build(settings, loaded.accounts, conn, loaded.vault, http)
        client = await aiohttp_client(create_app(rt, role="serve"))
        for origin in ("http://localhost:9000", "http://127.0.0.1:9000", "http://[::1]:9000"):
            ws = await client.ws_connect("/widget/v1/demo/socket", origin=origin)
            assert (await _hello(ws, visitor=None, after=0))["type"] == "welcome"
            await ws.close()
        for origin in ("http://127.0.0.1:8080", "http://localhost:9001"):
            refused = await client.get("/widget/v1/demo/socket", headers={"Origin": origin})
            assert refused.status == 403
        # what `simulate webchat --url` reads to send from an origin this instance takes
        info = await (await client.get("/sandbox/demo.json")).json()
        assert info["webchat_origins"].split() == list(cfg.allowed_origins)
        await client.close()
    await conn.aclose()
