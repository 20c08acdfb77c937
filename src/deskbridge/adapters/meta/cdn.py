"""Downloads of inbound attachments from Meta's CDN (Messenger and Instagram), whose URLs
arrive inside webhook bodies: every hop is https and SSRF-guarded."""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath
from urllib.parse import unquote

import httpx

from deskbridge.errors import PermanentError
from deskbridge.http import Fetcher, classify, read_capped, transport_error
from deskbridge.schemas import Attachment, Upload

__all__ = ["download"]

_MAX_REDIRECTS = 5
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
    try:
        first = url = httpx.URL(attachment.ref)
    except httpx.InvalidURL:
        raise PermanentError(f"{what}: not a URL") from None
    async with Fetcher(client, ()) as fetcher:
        for _ in range(_MAX_REDIRECTS + 1):
            if url.scheme != "https":
                raise PermanentError(f"{what}: not an https URL")
            try:
                hop = fetcher.client_for(url)
                async with hop.stream("GET", url, follow_redirects=False) as response:
                    if response.has_redirect_location:
                        url = response.url.join(response.headers["location"])
                        continue
                    if response.status_code in (403, 404, 410):
                        raise PermanentError(
                            f"{what}: HTTP {response.status_code} (expired or removed)",
                            status=response.status_code,
                        )
                    classify(response, what=what)
                    data = await read_capped(response, limit, what=what, untrusted=True)
                    content_type = response.headers.get("content-type", "")
            except httpx.InvalidURL:
                raise PermanentError(f"{what}: bad redirect location") from None
            except httpx.HTTPError as exc:
                # `from None`: the httpx error carries the request and its URL.
                raise transport_error(exc, what=what) from None
            name = _filename(first, f"{prefix}-{attachment.kind}")
            mime = _mime(content_type, attachment.mime_type, name)
            return Upload(filename=_with_extension(name, mime), mime_type=mime, data=data)
    raise PermanentError(f"{what}: more than {_MAX_REDIRECTS} redirects")


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
