"""A fake Telegram Bot API for the fault runs: ``sendMessage`` keeps every message (the
chat and the text) before it answers, so a worker killed while the answer is on its way
leaves a message the platform has and deskbridge never heard of, as Telegram would."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

__all__ = ["FakeTelegram"]


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[tuple[int, str]] = []
        self.latency = 0.0
        """Seconds between keeping a message and answering."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post(f"/bot{self.token}/{{method}}", self._call)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def copies(self) -> Counter[tuple[int, str]]:
        return Counter(self.sent)

    async def _call(self, request: web.Request) -> web.Response:
        if request.match_info["method"] != "sendMessage":
            return web.json_response({"ok": False, "error_code": 404}, status=404)
        body: dict[str, Any] = await request.json()
        chat = int(body["chat_id"])
        self.sent.append((chat, str(body["text"])))
        if self.latency:
            await asyncio.sleep(self.latency)
        result = {"message_id": len(self.sent), "chat": {"id": chat}, "date": 0}
        return web.json_response({"ok": True, "result": result})
