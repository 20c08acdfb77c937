"""What Messenger and Instagram share of a Messenger Platform webhook body (pure: bytes in,
events or a typed error out): the envelope, entries routed by their owner's id (a Page, an
Instagram professional account) before their events are validated, each ``messaging[]``
item read on its own, and the raw shapes both products send alike.

The Messenger Platform's webhook reference lists the messaging fields of both products and
says which are whose (``message_echoes``, ``message_deliveries``, ``message_reads`` are
Messenger's; Instagram's echoes come with ``messages``, its reads as ``messaging_seen``):
https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events
and, for Instagram's envelope (``object: instagram``, ``entry[].id`` the account),
https://developers.facebook.com/docs/instagram-platform/webhooks/examples

Raw models ignore unknown fields (Meta adds some every version) and are strict about the
types of the fields they read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.meta.ignoring import NamingBatch
from deskbridge.adapters.meta.lenient import Loc, leniently
from deskbridge.adapters.payload import dump, item_key, load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.errors import ParseFailed
from deskbridge.schemas import Channel, InboundEvent

__all__ = [
    "Entry",
    "Id",
    "MessageEdit",
    "Messaging",
    "Millis",
    "Party",
    "Payload",
    "Postback",
    "Product",
    "QuickReply",
    "Raw",
    "RawAttachment",
    "RawMessage",
    "parse",
]

# The last millisecond datetime can represent (9999-12-31T23:59:59.999Z).
_MAX_MS = 253_402_300_799_999


def _ms(value: Any) -> Any:
    # Meta's samples for the dashboard's test events show timestamps as strings.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return value


def _id(value: Any) -> Any:
    # Ids are strings in deliveries; sticker ids and some samples use numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Millis = Annotated[int, BeforeValidator(_ms), Field(ge=0, le=_MAX_MS)]
Id = Annotated[str, BeforeValidator(_id), Field(min_length=1, max_length=256)]


class Raw(BaseModel):
    """Base of the raw models: unknown fields ignored, read fields strictly typed."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Party(Raw):
    """``sender``/``recipient``: a PSID or IGSID, or the Page or account id (``user_ref``
    senders have no id)."""

    id: Id | None = None


class QuickReply(Raw):
    payload: str | None = None


class Payload(Raw):
    """An attachment's ``payload``: its CDN URL, a title on shares; each product adds
    its own fields."""

    url: str | None = None
    title: str | None = None


class RawAttachment(Raw):
    """One of ``message.attachments``; each product adds its ``payload``."""

    type: str


class RawMessage(Raw):
    """What every ``message`` has; each product adds its own content fields."""

    mid: str = Field(min_length=1)
    text: str | None = None
    is_echo: bool = False
    quick_reply: QuickReply | None = None


class Postback(Raw):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class MessageEdit(Raw):
    """``message_edits`` (webhook-events/message-edits): the new text of an earlier message;
    the reference shows ``num_edit`` as an integer and, in its sample, a string."""

    mid: str = Field(min_length=1)
    text: str | None = None
    num_edit: Id | None = None


class Messaging(Raw):
    """One ``entry[].messaging[]`` item: exactly one of the event fields is set. Each
    product adds its ``message`` and its own events."""

    sender: Party = Party()
    recipient: Party = Party()
    timestamp: Millis | None = None
    postback: Postback | None = None
    message_edit: MessageEdit | None = None


class Entry(Raw):
    id: Id
    time: Millis | None = None
    # Validated per item once the entry is routed; `standby` (a conversation another app
    # owns under the handover protocol) and `changes` (feed events) are not read.
    messaging: list[Any] | None = None


class _Envelope(Raw):
    object: str
    entry: list[dict[str, Any]]


E = TypeVar("E", bound=Messaging)


@dataclass(frozen=True, slots=True)
class Product(Generic[E]):
    """How one product reads the shared webhook. ``events(entry, item, account, dropped)``
    builds an item's events (``[]`` files nothing; ``Skip`` names why)."""

    channel: Channel
    object: str
    """The envelope's ``object``: ``page``, ``instagram``."""
    kind: str
    """What errors call the body's owner: ``Page`` (a Page webhook), ``Instagram``."""
    model: type[E]
    events: Callable[[Entry, E, str, Sequence[str]], list[InboundEvent]]
    core: frozenset[str]
    """Fields of ``message`` that fail the item when they do not read; any other field
    (and any one attachment) is left out and named."""
    unfiled: frozenset[str]
    """Events an owner may be subscribed to that file nothing: each its own reason."""
    quiet: tuple[str, ...] = ("standby",)
    """Keys that name an entry without ``messaging`` (else ``no_messaging``)."""
    foreign: frozenset[str] = frozenset()
    """Other products' ``object`` values posted to the same URL: ignored by name."""


def parse(body: bytes, routes: Mapping[str, str], product: Product[E]) -> Parsed:
    """Events in one webhook body, each for the account ``routes`` maps its entry's id to.

    Entries of ids not in ``routes`` are skipped and counted in ``unrouted``. Raises
    ``PayloadInvalid`` when the body is not a JSON object, ``ParseFailed`` when it is not
    the product's webhook at all (the message never quotes the body). Inside it every
    ``messaging[]`` event is read on its own: one that cannot be read is an item failure of
    the entry's account (of nobody when the entry names no id we can read), and its
    siblings are parsed as usual.
    """
    name = product.channel.value
    raw = load_object(body, what=name)
    other = raw.get("object")
    if isinstance(other, str) and other in product.foreign:
        return Parsed([], ignored=(other,))
    webhook = f"{product.kind} webhook"
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        # `from None`: a ValidationError repeats the input values, i.e. customer text.
        raise ParseFailed(
            f"{name}: not a readable {webhook} ({exc.error_count()} errors)"
        ) from None
    if envelope.object != product.object:
        article = "an" if product.kind[0] in "AEIOU" else "a"
        raise ParseFailed(f"{name}: not {article} {webhook} (object is not {product.object!r})")
    batch = NamingBatch(name, surrogates=escapes_surrogates(body))
    for raw_entry in envelope.entry:
        _entry(batch, routes, raw_entry, product)
    return batch.parsed(
        lambda account: dump({"object": product.object, "entry": batch.owned[account]})
    )


def _owner(raw: dict[str, Any], routes: Mapping[str, str]) -> str | None:
    """The account owning an entry that did not read, when its id still does ("" for an
    id no account here owns), else None."""
    owner = _id(raw.get("id"))
    return routes.get(owner, "") if isinstance(owner, str) and owner else None


def _entry(
    batch: NamingBatch, routes: Mapping[str, str], raw: dict[str, Any], product: Product[E]
) -> None:
    name = product.channel.value
    try:
        entry = Entry.model_validate(raw)
    except ValidationError as exc:
        owner = _owner(raw, routes)
        if owner == "":
            batch.unrouted += 1
            batch.mixed = True
        else:
            error = f"{name}: an entry is not readable ({exc.error_count()} errors)"
            whole = dump({"object": product.object, "entry": [raw]})
            batch.fail(owner, item_key(raw), whole, error)
        return
    account = routes.get(entry.id)
    if account is None:
        batch.unrouted += 1
        batch.mixed = True
        return
    batch.own(account, raw)
    head = {k: v for k, v in raw.items() if k != "messaging"}
    leave_out = functools.partial(_leave_out, product.core)

    def record(item: Any) -> bytes:
        return dump({"object": product.object, "entry": [{**head, "messaging": [item]}]})

    def read(item: Any) -> list[InboundEvent]:
        event, dropped = leniently(product.model, item, leave_out)
        events = product.events(entry, event, account, dropped)
        if not events:
            batch.ignore(_why(item, product.unfiled))
        return events

    for item in entry.messaging or ():
        batch.item(account, item, record, read)
    if not entry.messaging:
        reason = next((key for key in product.quiet if raw.get(key)), "no_messaging")
        batch.ignore(reason, account)


def _leave_out(core: frozenset[str], loc: Loc) -> Loc | None:
    """What of a message event may be left out when it does not read: an attachment, or
    another field of the message but its core. Anything else fails the event."""
    if len(loc) >= 3 and loc[:2] == ("message", "attachments") and isinstance(loc[2], int):
        return loc[:3]
    if len(loc) >= 2 and loc[0] == "message" and loc[1] not in core:
        return loc[:2]
    return None


def _why(raw: Any, unfiled: frozenset[str]) -> str:
    """The reason a readable event files nothing: its own name, else ``other_event``."""
    keys = raw.keys() if isinstance(raw, dict) else ()
    return next((k for k in keys if k in unfiled), "other_event")
