"""``GET /media/{token}``: a desk attachment, for channels that fetch files by URL.

The token is sealed by deskbridge and names one attachment of one account's desk, with
an expiry; anything else is a 404 (not a 401: a token reveals nothing either way).
"""

from __future__ import annotations

import functools
import logging
import struct
import zlib

from aiohttp import web

from deskbridge.errors import DeliveryError, PermanentError
from deskbridge.gateway.state import RUNTIME
from deskbridge.store.media import MediaLinkError

__all__ = ["serve", "video_preview"]

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


@functools.cache
def _video_preview_png() -> bytes:
    """A 320x180 dark frame with a light play triangle, drawn once (stdlib only)."""
    width, height = 320, 180
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(width):
            # the triangle (130,50)-(130,130)-(200,90)
            inside = 130 <= x <= 200 and abs(y - 90) <= (200 - x) * 40 / 70
            row += b"\xee\xee\xee" if inside else b"\x2b\x30\x3a"
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


async def video_preview(request: web.Request) -> web.Response:
    """The preview image LINE requires beside a video message."""
    return web.Response(
        body=_video_preview_png(),
        content_type="image/png",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def _quote(name: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)[:120]
