"""Peer 2 of ``make bench``: the obvious durable webhook. aiohttp checks Telegram's secret
header, validates the body with pydantic and awaits arq's ``enqueue_job`` with the
update id as the job id (arq's dedup: a redelivered update within the job's life is not
queued twice), then answers 200. ``bench/peers/arq_worker.py`` drains the queue.

    python bench/peers/arq_app.py PORT SECRET REDIS_URL
"""

from __future__ import annotations

import hmac
import sys

from aiohttp import web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from pydantic import ValidationError
from telegram import Update

_REDIS: web.AppKey[ArqRedis] = web.AppKey("redis", ArqRedis)
_SECRET: web.AppKey[str] = web.AppKey("secret", str)


async def webhook(request: web.Request) -> web.Response:
    got = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(got, request.app[_SECRET]):
        return web.json_response({"ok": False}, status=401)
    try:
        update = Update.model_validate_json(await request.read())
    except ValidationError:
        return web.json_response({"ok": False}, status=400)
    account = request.match_info["account"]
    await request.app[_REDIS].enqueue_job(
        "forward", account, update.model_dump(mode="json", by_alias=True),
        _job_id=f"tg:{account}:{update.update_id}",
    )  # fmt: skip
    return web.json_response({"ok": True})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def settings(url: str) -> RedisSettings:
    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=url.removeprefix("unix://"))
    return RedisSettings.from_dsn(url)


def main() -> None:
    port, secret, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    async def startup(app: web.Application) -> None:
        app[_REDIS] = await create_pool(settings(url))

    async def cleanup(app: web.Application) -> None:
        await app[_REDIS].aclose()

    app = web.Application()
    app[_SECRET] = secret
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/webhooks/telegram/{account}", webhook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
