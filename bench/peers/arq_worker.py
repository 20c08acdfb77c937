"""Peer 3 of ``make bench``: the naive forwarder. An arq worker whose one task POSTs each
queued message to the desk with httpx (one shared client, so connections are reused):
no desk user, no ticket lookup, no order per conversation, no dedup at the desk, no
record of what was filed. What deskbridge's worker is compared with.

It polls the queue as deskbridge's worker does (``max_jobs=50``, ``poll_delay=0.01``:
deskbridge's defaults). With arq's own defaults (10 jobs, a poll every 0.5 s, at most
100 ids a poll) the forwarder's rate is set by the poll interval, not by its work: about
200 messages/s whatever the machine, which is no measure of a design.

    python bench/peers/arq_worker.py REDIS_URL DESK_URL
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
from arq import Worker
from arq_app import settings


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = httpx.AsyncClient(base_url=ctx["desk"], timeout=10.0)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


async def forward(ctx: dict[str, Any], account: str, update: dict[str, Any]) -> None:
    msg = update.get("message") or {}
    chat = (msg.get("chat") or {}).get("id")
    body = {
        "ticket": {
            "subject": f"Telegram chat {chat}",
            "external_id": f"{account}:telegram:{chat}",
            "comment": {"body": msg.get("text") or ""},
        }
    }
    resp = await ctx["http"].post("/api/v2/tickets", json=body)
    resp.raise_for_status()


def main() -> None:
    url, desk = sys.argv[1], sys.argv[2]
    worker = Worker(
        functions=[forward],
        redis_settings=settings(url),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"desk": desk},
        keep_result=0,
        max_jobs=50,
        poll_delay=0.01,
    )
    worker.run()


if __name__ == "__main__":
    main()
