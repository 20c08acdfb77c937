"""Downloads of inbound attachments from Meta's CDN (Messenger and Instagram), whose URLs
arrive inside webhook bodies: every hop is https and SSRF-guarded."""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath
from urllib.parse import unquote

import httpx

from deskbridge.errors import PermanentError
from deskbridge.http import download_https
from deskbridge.schemas import Attachment, Upload

__all__ = ["download"]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


async def download(
    client: httpx.AsyncClient, attachment: Attachment, *, limit: int, what: str, prefix: str
) -> Upload:
    """The bytes behind ``attachment.ref`` (https only, redirects followed only to https),
    at most ``limit`` bytes. ``PermanentError`` when over the cap or expired (403/404/410);
    5xx and timeouts are retryable. ``prefix`` names a file whose URL names none. Errors
    never carry the URL (it holds a signed token)."""
    if attachment.size is not None and attachment.size > limit:
        raise PermanentError(f"{what}: over the {limit}-byte limit")
    data, content_type = await download_https(
        client, attachment.ref, limit=limit, what=what, gone="expired or removed"
    )
    name = _filename(httpx.URL(attachment.ref), f"{prefix}-{attachment.kind}")
    mime = _mime(content_type, attachment.mime_type, name)
    return Upload(filename=_with_extension(name, mime), mime_type=mime, data=data)


def _filename(url: httpx.URL, fallback: str) -> str:
    name = _UNSAFE_NAME.sub("_", unquote(url.path).rpartition("/")[2]).strip("._")
    return name[-128:] if name else fallback


def _mime(content_type: str, known: str | None, name: str) -> str:
    header = content_type.partition(";")[0].strip().lower()
    if header and header != "application/octet-stream":
        return header
    return known or mimetypes.guess_type(name)[0] or header or "application/octet-stream"


def _with_extension(name: str, mime: str) -> str:
    if PurePosixPath(name).suffix or mime == "application/octet-stream":
        return name
    return name + (mimetypes.guess_extension(mime) or "")
