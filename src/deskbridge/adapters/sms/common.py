"""What every SMS provider shares: opt-out keywords and consent events, the sender's
identity, the message an inbound SMS files as, the choice of sender for a reply, and
media downloads that send credentials to the provider's own hosts only.

Keywords: twilio.com/docs/messaging/tutorials/advanced-opt-out (the English keywords
carriers and Twilio honour on long codes) and Vonage's Opt-Out Assist
(developer.vonage.com/en/opt-out-assist/technical-details: STOP, HELP and opt-in
keywords are forwarded to the inbound webhook as well); the CTIA set is the same.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Literal

import httpx
import phonenumbers

from deskbridge.adapters.base import Parsed
from deskbridge.errors import PermanentError
from deskbridge.http import Fetcher, classify, read_capped, transport_error
from deskbridge.identity.normalize import phone_key
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    ChannelAddress,
    ChannelEvent,
    Identity,
    InboundEvent,
    Message,
    Sender,
    Upload,
)

__all__ = [
    "MAX_MEDIA",
    "OPT_IN",
    "OPT_OUT",
    "Keyword",
    "attachment_kind",
    "choose_sender",
    "customer_number",
    "download",
    "inbound",
    "keyword",
]

# Only a message that is the keyword alone counts (case-insensitive, a trailing . or !).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
_HELP = frozenset({"HELP", "INFO"})

MAX_MEDIA = 10
"""Attachments of one MMS, either way (Twilio's limit; deskbridge keeps it for both)."""

Keyword = Literal["opt_out", "opt_in", "help"]

_MAX_REDIRECTS = 5
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def keyword(body: str, declared: str = "") -> Keyword | None:
    """What a message that is only a keyword asks for; ``declared`` is the provider's own
    reading (Twilio's ``OptOutType``), which wins."""
    word = declared.strip().upper() or body.strip().strip(".!").upper()
    if word in OPT_OUT:
        return "opt_out"
    if word in OPT_IN:
        return "opt_in"
    return "help" if word in _HELP else None


def _sender(phone: str) -> Sender:
    # the carrier network asserts the originating number, as a trusted trunk's
    # P-Asserted-Identity does for SIP: strong (docs/channels/sms.md)
    return Sender(
        external_id=phone,
        identities=(
            Identity(kind="phone", value=phone, strength="strong", source="sms"),
            Identity(
                kind="channel_user",
                channel=Channel.SMS,
                value=phone,
                strength="strong",
                source="sms",
            ),
        ),
    )


def inbound(
    *,
    account: str,
    message_id: str,
    phone: str,
    text: str,
    attachments: Sequence[Attachment],
    notes: list[str],
    word: Keyword | None,
    occurred_at: datetime,
    context: Mapping[str, str],
) -> Parsed:
    """The message an inbound SMS or MMS files as (from ``phone``, E.164), and for an
    opt-out or opt-in keyword the consent event beside it (``flows.statuses`` keeps it as
    the contact's ``sms_consent``). ``notes`` is extended with what the agent should know."""
    thread = phone_key(phone)
    events: list[InboundEvent] = []
    if word in ("opt_out", "opt_in"):
        notes.append(
            "Opted out of SMS: no reply will be sent until they text START"
            if word == "opt_out"
            else "Opted back in to SMS"
        )
        events.append(
            ChannelEvent(
                account=account,
                channel=Channel.SMS,
                dedup_key=f"{word}:{message_id}",
                thread=thread,
                occurred_at=occurred_at,
                action=word,
                sender=_sender(phone),
                external_id=message_id,
            )
        )
    elif word == "help":
        notes.append("Asked for HELP (the carrier's keyword)")
    if not (text or attachments or notes):
        notes.append("Empty SMS")
    message = Message(
        account=account,
        channel=Channel.SMS,
        dedup_key=message_id,
        thread=thread,
        occurred_at=occurred_at,
        external_id=message_id,
        sender=_sender(phone),
        text=text,
        attachments=tuple(attachments),
        note="\n".join(notes) or None,
        context={k: v for k, v in context.items() if v},
    )
    return Parsed([message, *events])


def attachment_kind(mime: str | None) -> AttachmentKind:
    major = (mime or "").partition("/")[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]
    return "document"


def customer_number(to: ChannelAddress) -> str:
    """The customer's number as they wrote from (the thread is its matching key)."""
    raw = to.context.get("from", "")
    return raw if raw.startswith("+") else to.thread


def choose_sender(to: ChannelAddress, senders: Mapping[str, str], default: str) -> str:
    """The number the customer wrote to (kept with their last message), else the sender
    configured for the customer's country, else ``default``."""
    ours = to.context.get("to", "")
    if ours.startswith("+"):
        return ours
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(customer_number(to), None))
    except phonenumbers.NumberParseException:
        region = None
    return senders.get(region, default) if region else default


async def download(
    client: httpx.AsyncClient,
    attachment: Attachment,
    *,
    limit: int,
    auth_for: Callable[[httpx.URL], httpx.Auth | None],
) -> Upload:
    """Download an MMS media file (https only, at most ``limit`` bytes). ``auth_for``
    gives the credentials for a URL on the provider's own hosts, None elsewhere: a
    redirect to a CDN is followed without them, through the guarded client."""
    what = "sms media download"
    try:
        url = httpx.URL(attachment.ref)
    except httpx.InvalidURL:
        raise PermanentError(f"{what}: not a URL") from None
    async with Fetcher(client, ()) as fetcher:
        for _ in range(_MAX_REDIRECTS + 1):
            if url.scheme != "https":
                raise PermanentError(f"{what}: not an https URL")
            auth = auth_for(url)
            try:
                hop = client if auth is not None else fetcher.client_for(url)
                async with hop.stream("GET", url, auth=auth, follow_redirects=False) as response:
                    if response.has_redirect_location:
                        url = response.url.join(response.headers["location"])
                        continue
                    if response.status_code in (403, 404, 410):
                        raise PermanentError(
                            f"{what}: HTTP {response.status_code} (removed or not ours)",
                            status=response.status_code,
                        )
                    classify(response, what=what)
                    data = await read_capped(response, limit, what=what, untrusted=True)
                    mime = response.headers.get("content-type", "").partition(";")[0]
            except httpx.InvalidURL:
                raise PermanentError(f"{what}: bad redirect location") from None
            except httpx.HTTPError as exc:
                raise transport_error(exc, what=what) from None
            mime = mime.strip().lower() or attachment.mime_type or "application/octet-stream"
            return Upload(filename=_filename(attachment, mime), mime_type=mime, data=data)
    raise PermanentError(f"{what}: more than {_MAX_REDIRECTS} redirects")


def _filename(attachment: Attachment, mime: str) -> str:
    if attachment.filename:
        # the name the customer's phone gave the file (Vonage sends one): kept when it
        # survives being made safe, with no extension guessed on top
        given = _UNSAFE_NAME.sub("_", attachment.filename)[-64:]
        if given.strip("._"):
            return given
    media_id = _UNSAFE_NAME.sub("_", attachment.ref.rstrip("/").rpartition("/")[2])[-64:]
    return (media_id or "mms") + (mimetypes.guess_extension(mime) or "")
