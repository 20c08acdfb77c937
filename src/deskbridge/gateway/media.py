"""``GET /media/{token}``: a desk attachment, for channels that fetch files by URL.

The token is sealed by deskbridge and names one attachment of one account's desk, with
an expiry; anything else is a 404 (not a 401: a token reveals nothing either way).
"""

from __future__ import annotations

import logging

from aiohttp import web

from deskbridge.errors import DeliveryError, PermanentError
from deskbridge.gateway.keys import RUNTIME
from deskbridge.store.media import MediaLinkError

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        account, attachment = rt.links.open(request.match_info["token"])
    except MediaLinkError:
        raise web.HTTPNotFound(text="no such file") from None
    desk = rt.desk(account)
    if desk is None:
        raise web.HTTPNotFound(text="no such file")
    try:
        upload = await desk.fetch(attachment)
    except PermanentError as exc:
        log.info("media for %s: desk refused the attachment (%s)", account, exc)
        raise web.HTTPNotFound(text="no such file") from None
    except DeliveryError as exc:
        log.warning("media for %s: desk unavailable (%s)", account, exc)
        # 503 asks the channel to fetch again later
        raise web.HTTPServiceUnavailable(text="try again later") from None
    return web.Response(
        body=upload.data,
        content_type=upload.mime_type or "application/octet-stream",
        headers={
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": f'inline; filename="{_quote(upload.filename)}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


def _quote(name: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)[:120]
