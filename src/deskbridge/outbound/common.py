"""Small helpers every desk connector shares."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import httpx

from deskbridge.errors import PermanentError
from deskbridge.http import Fetcher, classify, read_capped, transport_error
from deskbridge.schemas import Attachment, Contact, Upload

__all__ = ["Credentials", "display_name", "download", "unique"]


def display_name(contact: Contact, *, limit: int | None = None) -> str:
    """The desk user's name: the contact's, else "<Channel> user", else "Customer"."""
    if contact.display_name and contact.display_name.strip():
        name = contact.display_name.strip()
        return name[:limit] if limit else name
    for identity in contact.identities:
        if identity.kind == "channel_user" and identity.channel is not None:
            return f"{identity.channel.value.capitalize()} user"
    return "Customer"


def unique(values: Iterable[str]) -> list[str]:
    """Non-empty values, first occurrence kept, in order."""
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


Credentials = Callable[[httpx.URL], dict[str, str]]
"""For one hop of a download: the headers (or query) that URL may be given."""


def _none(url: httpx.URL) -> dict[str, str]:
    return {}


def _filename(url: httpx.URL) -> str | None:
    names = parse_qs(url.query.decode()).get("name")
    if names and names[0]:
        return names[0]
    return url.path.rstrip("/").rsplit("/", 1)[-1] or None


async def download(
    client: httpx.AsyncClient,
    attachment: Attachment,
    *,
    trusted: str,
    limit: int,
    what: str,
    headers: Credentials = _none,
    params: Credentials = _none,
    max_redirects: int = 5,
) -> Upload:
    """An agent's attachment from its desk: a URL on the ``trusted`` base URL's origin
    gets the desk's credentials (``headers``/``params`` decide per hop, so a redirect to
    the desk's file storage goes without them); any other URL came in a webhook body and
    is fetched SSRF-guarded, never a web page. At most ``limit`` bytes, streamed."""
    try:
        url = httpx.URL(attachment.ref)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"{what}: not a URL") from exc
    if url.scheme not in ("https", "http") or not url.host:
        raise PermanentError(f"{what}: not an http(s) URL")
    async with Fetcher(client, [trusted]) as fetcher:
        for _ in range(max_redirects + 1):
            try:
                hop = fetcher.client_for(url)
                async with hop.stream(
                    "GET", url, headers=headers(url), params=params(url) or None
                ) as resp:
                    if resp.has_redirect_location:
                        url = url.join(resp.headers["location"])
                        continue
                    classify(resp, what=what)
                    data = await read_capped(
                        resp, limit, what=what, untrusted=not fetcher.trusted(url)
                    )
                    content_type = resp.headers.get("content-type", "")
            except httpx.HTTPError as exc:
                raise transport_error(exc, what=what) from exc
            break
        else:
            raise PermanentError(f"{what}: more than {max_redirects} redirects")
    name = attachment.filename or _filename(url) or "attachment"
    mime = (
        attachment.mime_type
        or content_type.split(";", 1)[0].strip()
        or mimetypes.guess_type(name)[0]
        or "application/octet-stream"
    )
    return Upload(filename=name, mime_type=mime, data=data)
