"""Small helpers every desk connector shares."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import httpx

from deskbridge.errors import PermanentError
from deskbridge.http import Fetcher, classify, read_capped, transport_error
from deskbridge.identity.normalize import phone_key
from deskbridge.schemas import Attachment, Channel, Contact, Upload

__all__ = ["Credentials", "display_name", "download", "phones", "unique"]


def display_name(contact: Contact, *, limit: int | None = None) -> str:
    """The desk user's name: the contact's, else for a SIP caller their number or URI
    user ("alice (SIP)"), else "<Channel> user", else "Customer"."""
    name = (contact.display_name or "").strip() or _fallback_name(contact)
    return name[:limit] if limit else name


def _fallback_name(contact: Contact) -> str:
    phones = [i.value for i in contact.identities if i.kind == "phone"]
    for identity in contact.identities:
        if identity.kind != "channel_user" or identity.channel is None:
            continue
        if identity.channel is Channel.SIP:
            # a From header alone names nobody: the number or URI user is all there is
            user, at, _ = identity.value.partition(":")[2].partition("@")
            return phones[0] if phones else f"{user} (SIP)" if at and user else identity.value
        return f"{identity.channel.brand} user"
    return "Customer"


def unique(values: Iterable[str]) -> list[str]:
    """Non-empty values, first occurrence kept, in order."""
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


def phones(contact: Contact) -> list[str]:
    """The contact's phone numbers, each once, in the graph's order, except that where
    both spellings of one Argentine mobile are known (``+54 9 11...`` and ``+54 11...``)
    the mobile form comes first: it is the one a desk shows as the user's phone, so a
    later message in the other form never rewrites it (docs/identity.md)."""
    found = unique(i.value.strip() for i in contact.identities if i.kind == "phone")
    groups: dict[str, int] = {}
    for n, value in enumerate(found):
        groups.setdefault(phone_key(value), n)

    def rank(item: tuple[int, str]) -> tuple[int, int, int]:
        n, value = item
        mobile = value.startswith("+549") and len(value) == 14
        return (groups[phone_key(value)], 0 if mobile else 1, n)

    return [value for _, value in sorted(enumerate(found), key=rank)]


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
