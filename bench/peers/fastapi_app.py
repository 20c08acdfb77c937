"""Peer 1 of ``make bench``: the webhook a team writes with FastAPI in an afternoon. It
checks Telegram's secret header, validates the body with pydantic, schedules the
forwarding as a ``BackgroundTasks`` task and answers 200. Nothing is stored: a crash,
restart or desk outage loses every message not yet forwarded (this is the non-durable
design deskbridge is compared with).

    python bench/peers/fastapi_app.py PORT SECRET
"""

from __future__ import annotations

import hmac
import sys
from collections import deque

import uvicorn
from fastapi import BackgroundTasks, FastAPI, Header, HTTPException
from telegram import Update

app = FastAPI()
secret = ""
# what the background task would forward to the desk; bounded, so a long run holds no more
forwarded: deque[tuple[int, int, str]] = deque(maxlen=1000)


async def forward(update: Update) -> None:
    """The background work: here it only queues the message in memory (the peer is
    measured for its acks, and a desk call would not change what it acknowledges).
    ``async``: Starlette runs a plain ``def`` task in its thread pool, a thread hop per
    request that cost this peer more than half its throughput for work that never
    blocks."""
    msg = update.message
    if msg is not None:
        forwarded.append((update.update_id, msg.chat.id, msg.text or ""))


@app.post("/webhooks/telegram/{account}")
async def webhook(
    account: str,
    update: Update,
    background: BackgroundTasks,
    x_telegram_bot_api_secret_token: str = Header(default=""),
) -> dict[str, bool]:
    if not hmac.compare_digest(x_telegram_bot_api_secret_token, secret):
        raise HTTPException(status_code=401, detail="bad secret")
    background.add_task(forward, update)
    return {"ok": True}


@app.get("/healthz")
async def healthz() -> str:
    return "ok"


def main() -> None:
    global secret
    port, secret = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
