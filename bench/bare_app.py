"""The baseline for ``bench/run.py``: a bare aiohttp app with one POST handler that reads
the body and answers 200, served the way the gateway is (one process, access log off).

    python bench/bare_app.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

_OK = b'{"ok":true}'


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_OK, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/webhooks/{channel}/{account}", webhook)
    app.router.add_post("/webhooks/{channel}", webhook)  # a Meta app's one URL
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, backlog=1024, print=None)


if __name__ == "__main__":
    main()
