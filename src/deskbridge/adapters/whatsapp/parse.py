"""WhatsApp Cloud API webhook bodies to normalized events (pure: bytes in, events or a
typed error out).

Models the subset of the ``messages`` webhook field we read (webhooks/reference/messages/*
and business-scoped-user-ids on developers.facebook.com). Raw models ignore unknown fields
(Meta adds some every quarter) and are strict about the types of the fields they read.

One body may carry several entries (one per WABA), changes, messages and statuses, for
several phone numbers: each change is routed on ``metadata.phone_number_id``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import Parsed, Peeked, Skip
from deskbridge.adapters.batch import Batch
from deskbridge.adapters.meta import scrub
from deskbridge.adapters.meta.ignoring import NamingBatch
from deskbridge.adapters.meta.lenient import Loc, leniently, numeric
from deskbridge.adapters.payload import dump, item_key, load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.adapters.whatsapp.api import WINDOW_CLOSED
from deskbridge.errors import ParseFailed, PayloadInvalid
from deskbridge.identity.normalize import phone_key
from deskbridge.identity.phones import e164
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    Identity,
    InboundEvent,
    Location,
    Message,
    Sender,
    SharedContact,
    StatusUpdate,
)

__all__ = ["OBJECT", "e164", "parse", "peek"]

OBJECT = "whatsapp_business_account"

StatusName = Literal["sent", "delivered", "read", "failed"]

_MAX_UNIX = 253_402_300_799  # 9999-12-31: datetime.fromtimestamp cannot overflow below it
_FLOW_TEXT_LIMIT = 4000
_ORDER_ITEMS = 20
_STATUSES: dict[str, StatusName] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}
_MEDIA: dict[str, AttachmentKind] = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
}


def _unix(value: Any) -> Any:
    # Meta sends Unix seconds as a decimal string ("1750000000"); some deliveries and
    # the SDKs' samples send a JSON number, which the SDKs accept too.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_UNIX:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}", value):
        seconds = int(value)
        if seconds <= _MAX_UNIX:
            return datetime.fromtimestamp(seconds, UTC)
    raise ValueError("not Unix seconds")


UnixTime = Annotated[datetime, BeforeValidator(_unix)]
Id = Annotated[str, Field(min_length=1, max_length=512)]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Profile(_Raw):
    name: str | None = None
    username: str | None = None


class WaContact(_Raw):
    """``value.contacts[]``: who wrote (or, on statuses, who received)."""

    profile: Profile | None = None
    wa_id: str | None = None
    user_id: str | None = None


class Media(_Raw):
    id: Id
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    animated: bool = False


class Text(_Raw):
    body: str


class GeoPoint(_Raw):
    latitude: Annotated[float, BeforeValidator(numeric), Field(ge=-90, le=90)]
    longitude: Annotated[float, BeforeValidator(numeric), Field(ge=-180, le=180)]
    name: str | None = None
    address: str | None = None


class CardName(_Raw):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class CardPhone(_Raw):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class CardEmail(_Raw):
    email: str | None = None


class Card(_Raw):
    """One entry of a ``contacts`` message: a contact card the customer shared."""

    name: CardName | None = None
    phones: list[CardPhone] = []
    emails: list[CardEmail] = []
    origin: str | None = None


class Reaction(_Raw):
    message_id: Id
    emoji: str | None = None


class Choice(_Raw):
    id: str
    title: str
    description: str | None = None


class NfmReply(_Raw):
    """A Flow's answers (flows/reference/responsemsgwebhook): ``response_json`` is a JSON
    object in a string; ``name`` is ``flow`` or ``address_message``."""

    response_json: str | None = None
    name: str | None = None
    body: str | None = None


class CallPermission(_Raw):
    response: str | None = None


class Interactive(_Raw):
    type: str
    button_reply: Choice | None = None
    list_reply: Choice | None = None
    nfm_reply: NfmReply | None = None
    call_permission_reply: CallPermission | None = None


class Revoke(_Raw):
    original_message_id: str | None = None


class OrderItem(_Raw):
    product_retailer_id: str | None = None
    quantity: int | float | None = None
    item_price: int | float | None = None
    currency: str | None = None


class Order(_Raw):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[OrderItem] = []


class Button(_Raw):
    text: str
    payload: str | None = None


class Context(_Raw):
    id: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False


class WaError(_Raw):
    code: int | None = None
    title: str | None = None
    message: str | None = None


class Unsupported(_Raw):
    type: str | None = None


class System(_Raw):
    type: str | None = None
    body: str | None = None


class Edit(_Raw):
    """``type: edit`` (webhooks/reference/messages/edit): the edited message in full."""

    original_message_id: Id
    message: dict[str, Any]


class WaMessage(_Raw):
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    id: Id
    timestamp: UnixTime
    type: str
    text: Text | None = None
    image: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: GeoPoint | None = None
    contacts: list[Card] | None = None
    reaction: Reaction | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    system: System | None = None
    unsupported: Unsupported | None = None
    context: Context | None = None
    edit: Edit | None = None
    revoke: Revoke | None = None
    order: Order | None = None
    errors: list[WaError] = []


class WaStatus(_Raw):
    id: Id
    status: str
    timestamp: UnixTime
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    errors: list[WaError] = []


class Metadata(_Raw):
    phone_number_id: str
    display_phone_number: str | None = None


class Routing(_Raw):
    """Just enough of a change's ``value`` to route it before reading the rest."""

    metadata: Metadata


class Head(_Raw):
    """A change's ``value`` with its items left to be read one by one."""

    metadata: Metadata
    contacts: list[WaContact] = []
    messages: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []


class Change(_Raw):
    field: str
    value: dict[str, Any] = {}


class Entry(_Raw):
    id: str | None = None
    changes: list[dict[str, Any]] = []


class Envelope(_Raw):
    object: str
    entry: list[dict[str, Any]]


def parse(body: bytes, routes: Mapping[str, str]) -> Parsed:
    """The events of one webhook body; ``routes`` maps ``phone_number_id`` to account.

    Raises ``PayloadInvalid`` when the body is not a JSON object, ``ParseFailed`` when it
    is not a WhatsApp envelope at all (messages never repeat body content). Inside the
    envelope every message and status is read on its own: one that cannot be read is an
    item failure of the account that owns its number (or of nobody, when its change does
    not say which number it is for), and its siblings are parsed as usual. Changes of
    other fields and statuses other than sent/delivered/read/failed give no events;
    changes for numbers without a route are skipped and counted in ``unrouted``.
    """
    raw = load_object(body, what="whatsapp")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        # `from None`: a ValidationError repeats the input values, i.e. customer text.
        raise ParseFailed(
            f"whatsapp: not a readable webhook ({exc.error_count()} errors)"
        ) from None
    if envelope.object != OBJECT:
        raise ParseFailed("whatsapp: not a whatsapp_business_account webhook")
    batch = NamingBatch("whatsapp", surrogates=escapes_surrogates(body))
    for index, entry in enumerate(envelope.entry):
        _entry(batch, routes, index, entry)
    return batch.parsed(lambda account: _cut(batch, account))


def peek(body: bytes, routes: Mapping[str, str]) -> Peeked | None:
    """The common webhook (``Peeks``): one entry with one ``messages`` change for a number
    ``routes`` names, holding one message (not a ``system`` notice) with a ``from`` and at
    most one contact, and no statuses or errors; such a body is its account's alone
    (``Parsed.bodies`` is None for it). Its dedup key (the wamid) and thread (the digits
    of ``from``) are the ones ``_message`` gives the event; anything else is None (the
    full parse decides). The fields ``parse`` must read before it can file the message
    (``_CORE``, the change's ``Head``) are checked as strictly as the models check them;
    the rest is left to the worker's parse, which reads them leniently."""
    try:
        raw = load_object(body, what="whatsapp")
    except PayloadInvalid:
        return None
    entries = raw.get("entry")
    if raw.get("object") != OBJECT or type(entries) is not list or len(entries) != 1:
        return None
    entry = entries[0]
    if type(entry) is not dict or not _maybe_str(entry.get("id")):
        return None
    changes = entry.get("changes")
    if type(changes) is not list or len(changes) != 1 or type(changes[0]) is not dict:
        return None
    change = changes[0]
    value = change.get("value")
    if change.get("field") != "messages" or type(value) is not dict:
        return None
    account = _routed(value, routes)
    if account is None or escapes_surrogates(body):
        return None
    messages = value.get("messages")
    if type(messages) is not list or len(messages) != 1 or type(messages[0]) is not dict:
        return None
    msg = messages[0]
    wamid, sender = msg.get("id"), msg.get("from")
    if type(wamid) is not str or not 0 < len(wamid) <= 512 or type(sender) is not str:
        return None
    thread = _digits(sender)
    if thread is None or not _maybe_str(msg.get("from_user_id")) or not _dated(msg):
        return None
    return Peeked(account, wamid, thread)


def _maybe_str(value: Any) -> bool:
    return value is None or type(value) is str


def _routed(value: dict[str, Any], routes: Mapping[str, str]) -> str | None:
    """The account of a change's ``value`` that holds nothing but messages and at most one
    contact of the types ``Head`` reads, else None."""
    if value.get("statuses", []) != [] or "errors" in value:
        return None
    metadata = value.get("metadata")
    if type(metadata) is not dict or not _maybe_str(metadata.get("display_phone_number")):
        return None
    number = metadata.get("phone_number_id")
    contacts = value.get("contacts", [])
    if type(number) is not str or type(contacts) is not list or len(contacts) > 1:
        return None
    if contacts and not _contact(contacts[0]):
        return None
    return routes.get(number)


def _contact(contact: Any) -> bool:
    """Whether ``contact`` reads as ``WaContact``."""
    if type(contact) is not dict:
        return False
    profile = contact.get("profile")
    if profile is not None and (
        type(profile) is not dict
        or not _maybe_str(profile.get("name"))
        or not _maybe_str(profile.get("username"))
    ):
        return False
    return _maybe_str(contact.get("wa_id")) and _maybe_str(contact.get("user_id"))


def _dated(msg: dict[str, Any]) -> bool:
    """Whether the message has a ``type`` other than ``system`` and a ``timestamp``
    ``UnixTime`` reads."""
    kind = msg.get("type")
    if type(kind) is not str or kind == "system":
        return False
    try:
        _unix(msg.get("timestamp"))
    except ValueError:
        return False
    return True


def _record(head: dict[str, Any], change: dict[str, Any], value: dict[str, Any]) -> bytes:
    """A body holding one change of one entry, with ``value`` as the change's value."""
    entry = {**head, "changes": [{**change, "value": value}]}
    return dump({"object": OBJECT, "entry": [entry]})


def _cut(batch: Batch, account: str) -> bytes:
    """The body cut down to the changes ``account`` owns, in their entries and order."""
    entries: dict[int, dict[str, Any]] = {}
    for part in batch.owned[account]:
        index, head, change = part
        entries.setdefault(index, {**head, "changes": []})["changes"].append(change)
    return dump({"object": OBJECT, "entry": list(entries.values())})


def _entry(batch: NamingBatch, routes: Mapping[str, str], index: int, raw: dict[str, Any]) -> None:
    head = {k: v for k, v in raw.items() if k != "changes"}
    try:
        entry = Entry.model_validate(raw)
    except ValidationError as exc:
        batch.fail(
            None,
            item_key(raw),
            dump({"object": OBJECT, "entry": [raw]}),
            f"whatsapp: an entry is not readable ({exc.error_count()} errors)",
        )
        return
    for change in entry.changes:
        _change(batch, routes, index, head, change)


def _owner(value: dict[str, Any], routes: Mapping[str, str]) -> str | None:
    """The account owning a change whose value did not read, when its number still does
    ("" for a number no account here owns), else None."""
    try:
        number = Routing.model_validate(value).metadata.phone_number_id
    except ValidationError:
        return None
    return routes.get(number, "")


def _change(
    batch: NamingBatch,
    routes: Mapping[str, str],
    index: int,
    head: dict[str, Any],
    raw: dict[str, Any],
) -> None:
    try:
        change = Change.model_validate(raw)
        if change.field != "messages":
            # account_update, message_template_status_update, calls ...: not a customer's
            batch.mixed = True
            batch.ignore("other_field")
            return
        value = Head.model_validate(change.value)
    except ValidationError as exc:
        owner = (
            _owner(raw.get("value") or {}, routes) if isinstance(raw.get("value"), dict) else None
        )
        if owner == "":
            batch.unrouted += 1
            batch.mixed = True
            return
        error = f"whatsapp: a change is not readable ({exc.error_count()} errors)"
        batch.fail(
            owner,
            item_key(raw),
            dump({"object": OBJECT, "entry": [{**head, "changes": [raw]}]}),
            error,
        )
        return
    account = routes.get(value.metadata.phone_number_id)
    if account is None:
        batch.unrouted += 1
        batch.mixed = True
        return
    batch.own(account, (index, head, raw))
    whole = change.value
    owner = account

    def message(msg: Any) -> list[InboundEvent]:
        return [_read(msg, value.contacts, owner)]

    def status(st: Any) -> list[InboundEvent]:
        read = WaStatus.model_validate(st)
        update = _status(read, owner)
        if update is None:
            raise Skip(f"status_{read.status}"[:64], read.id)
        return [update]

    for msg in value.messages:
        batch.item(
            account,
            msg,
            lambda m: _record(head, raw, {**whole, "messages": [m], "statuses": []}),
            message,
        )
    for st in value.statuses:
        batch.item(
            account,
            st,
            lambda s: _record(head, raw, {**whole, "messages": [], "statuses": [s]}),
            status,
        )


def _digits(wa_id: str | None) -> str | None:
    wa_id = (wa_id or "").strip().removeprefix("+")
    return wa_id or None


def _sender(msg: WaMessage, contacts: Sequence[WaContact]) -> tuple[Sender, str, str | None]:
    """The sender, the conversation's thread, and the sender's wa_id."""
    wa_id = _digits(msg.from_)
    bsuid = msg.from_user_id or None
    # contacts[] lists every sender of the change's messages: match on either id.
    contact = next(
        (
            c
            for c in contacts
            if (bsuid is not None and c.user_id == bsuid)
            or (wa_id is not None and _digits(c.wa_id) == wa_id)
        ),
        None,
    )
    if contact is None and wa_id is None and bsuid is None and len(contacts) == 1:
        # A username-only customer may be named only in contacts[] (user_id, no wa_id);
        # with one contact in the change, it is the sender (as the SDKs read it).
        contact = contacts[0]
    if contact is not None:
        wa_id = wa_id or _digits(contact.wa_id)
        bsuid = bsuid or contact.user_id or None
    user = bsuid or wa_id
    if user is None:
        raise ParseFailed(
            "whatsapp: a message names no sender (no from, no from_user_id, no single contact)"
        )
    identities = [
        Identity(
            kind="channel_user",
            channel=Channel.WHATSAPP,
            value=user,
            strength="strong",
            source="whatsapp",
        )
    ]
    phone = e164(wa_id, trusted=True) if wa_id else None
    if phone is not None:
        # WhatsApp verified the number when the customer registered it.
        identities.append(Identity(kind="phone", value=phone, strength="strong", source="whatsapp"))
    profile = contact.profile if contact is not None else None
    sender = Sender(
        external_id=user,
        display_name=(profile.name or None) if profile else None,
        username=(profile.username or None) if profile else None,
        identities=tuple(identities),
    )
    # The thread is the phone when WhatsApp shares it: it is what every conversation so
    # far was keyed on, and BSUIDs only began to appear in April 2026. A customer who
    # hides their number behind a username gets a BSUID thread; replies then address the
    # BSUID (`recipient`), see adapter.py.
    return sender, wa_id or user, wa_id


# What a message cannot be filed without; any other field that does not read is left out
# of the message, and its note says so.
_CORE = frozenset({"from", "from_user_id", "id", "timestamp", "type"})


def _leave_out(loc: Loc) -> Loc | None:
    return None if not loc or loc[0] in _CORE else loc[:1]


def _read(raw: Any, contacts: Sequence[WaContact], account: str) -> Message:
    msg, dropped = leniently(WaMessage, raw, _leave_out)
    return _message(msg, contacts, account, dropped)


@dataclass(slots=True)
class _Content:
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contact: SharedContact | None = None
    reply_to: str | None = None
    notes: list[str] = field(default_factory=list)


def _message(
    msg: WaMessage, contacts: Sequence[WaContact], account: str, dropped: Sequence[str] = ()
) -> Message:
    sender, thread, wa_id = _sender(msg, contacts)
    edit_of = None
    if msg.type == "edit" and msg.edit is not None:
        edit_of = msg.edit.original_message_id
        content = _edited(msg, msg.edit, wa_id)
    else:
        content = _content(msg, wa_id, dropped)
    if content.contact is not None and content.contact.is_sender and content.contact.phone:
        sender = _with_phone(sender, content.contact.phone)
    notes = content.notes
    if msg.errors:
        titles = [scrub(e.title or e.message or "") for e in msg.errors]
        codes = [str(e.code) for e in msg.errors if e.code is not None]
        error = "; ".join(t for t in titles if t) or "error"
        notes.append(f"WhatsApp: {error}" + (f" ({', '.join(codes)})" if codes else ""))
    if dropped:
        notes.append("Could not read and left out: " + ", ".join(dropped))
    return Message(
        account=account,
        channel=Channel.WHATSAPP,
        dedup_key=msg.id,
        thread=thread,
        occurred_at=msg.timestamp,
        external_id=msg.id,
        sender=sender,
        text=content.text,
        attachments=content.attachments,
        reply_to=content.reply_to,
        edit_of=edit_of,
        location=content.location,
        contact=content.contact,
        note="; ".join(notes) or None,
    )


def _edited(msg: WaMessage, edit: Edit, wa_id: str | None) -> _Content:
    """The new content of an edited message, read like any message; what of it cannot be
    read is left out and named."""
    inner = {**edit.message, "id": msg.id, "timestamp": str(int(msg.timestamp.timestamp()))}
    inner.pop("edit", None)
    try:
        edited, dropped = leniently(WaMessage, inner, _leave_out)
    except ValidationError:
        return _Content(notes=["Edited a message; the new content could not be read"])
    content = _content(edited, wa_id, dropped)
    if dropped:
        content.notes.append("Could not read and left out: " + ", ".join(dropped))
    return content


def _content(msg: WaMessage, wa_id: str | None, dropped: Sequence[str] = ()) -> _Content:
    out = _Content(reply_to=msg.context.id if msg.context and msg.context.id else None)
    notes = out.notes
    media = getattr(msg, msg.type, None) if msg.type in _MEDIA else None
    if msg.type == "text" and msg.text is not None:
        out.text = msg.text.body
    elif isinstance(media, Media):
        out.attachments = (_attachment(msg.type, media),)
        if msg.type in ("image", "video", "document"):
            out.text = media.caption or ""
        if msg.type == "sticker":
            notes.append("Animated sticker" if media.animated else "Sticker")
    elif msg.type == "location" and msg.location is not None:
        g = msg.location
        out.location = Location(
            latitude=g.latitude, longitude=g.longitude, name=g.name or None, address=g.address
        )
    elif msg.type == "contacts" and msg.contacts:
        out.contact, note = _cards(msg.contacts, wa_id)
        notes += [note] if note else []
    elif msg.type == "reaction" and msg.reaction is not None:
        r = msg.reaction
        out.reply_to = r.message_id
        notes.append(
            f"Reacted {r.emoji} to message {r.message_id}"
            if r.emoji
            else f"Removed a reaction from message {r.message_id}"
        )
    elif msg.type == "interactive" and (picked := _choice(msg.interactive)) is not None:
        kind, choice = picked
        out.text = choice.title
        detail = f": {choice.description}" if choice.description else ""
        notes.append(f"Chose {kind} “{choice.title}” (id {choice.id}){detail}")
    elif msg.type == "interactive" and (reply := _nfm(msg.interactive)) is not None:
        out.text, note = _flow_reply(reply)
        notes.append(note)
    elif msg.type == "button" and msg.button is not None:
        out.text = msg.button.text
        notes.append("Tapped a quick-reply button of a template message")
    elif (note := _other(msg)) is not None:
        notes.append(note)
    elif msg.type not in dropped:
        # Never silence: the agent sees that something arrived and what kind it was.
        kind = msg.unsupported.type if msg.unsupported and msg.unsupported.type else msg.type
        if msg.type == "interactive" and msg.interactive is not None:
            kind = f"interactive {msg.interactive.type}"
        notes.append(f"Unsupported WhatsApp message ({kind})")
    if msg.context and (msg.context.forwarded or msg.context.frequently_forwarded):
        notes.append("Frequently forwarded" if msg.context.frequently_forwarded else "Forwarded")
    return out


def _other(msg: WaMessage) -> str | None:
    """A note for the kinds that carry no text of their own, when their content reads."""
    if msg.type == "system" and msg.system is not None:
        return f"WhatsApp notice ({msg.system.type or 'system'}): {msg.system.body or ''}"
    if msg.type == "revoke" and msg.revoke is not None:
        return f"Deleted message {msg.revoke.original_message_id or '(unknown)'}"
    if msg.type == "order" and msg.order is not None and msg.order.product_items:
        items = "; ".join(_order_item(i) for i in msg.order.product_items[:_ORDER_ITEMS])
        more = len(msg.order.product_items) - _ORDER_ITEMS
        tail = f"; and {more} more" if more > 0 else ""
        text = f" — {msg.order.text}" if msg.order.text else ""
        return f"Order from catalog {msg.order.catalog_id or '?'}: {items}{tail}{text}"
    reply = msg.interactive.call_permission_reply if msg.interactive else None
    if msg.type == "interactive" and reply is not None:
        return f"Call permission: {reply.response or 'answered'}"
    return None


def _order_item(item: OrderItem) -> str:
    price = f" at {item.item_price} {item.currency or ''}".rstrip() if item.item_price else ""
    return f"{item.quantity or 1} x {item.product_retailer_id or '?'}{price}"


def _nfm(interactive: Interactive | None) -> NfmReply | None:
    if interactive is None or interactive.type != "nfm_reply" or interactive.nfm_reply is None:
        return None
    return interactive.nfm_reply if interactive.nfm_reply.response_json is not None else None


def _flow_reply(reply: NfmReply) -> tuple[str, str]:
    """The answers of a Flow as ``field: value`` lines, and the note naming the Flow.
    ``flow_token`` is ours (it names the Flow we sent), not the customer's answer."""
    note = f"Flow reply ({reply.name or 'flow'})"
    given = reply.response_json or ""
    try:
        answers = json.loads(given)
    except ValueError:
        return given[:_FLOW_TEXT_LIMIT], note + "; its answers are not JSON"
    if not isinstance(answers, dict):
        return _flat(answers), note
    lines = [f"{key}: {_flat(value)}" for key, value in answers.items() if key != "flow_token"]
    return "\n".join(lines)[:_FLOW_TEXT_LIMIT] or (reply.body or ""), note


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _attachment(kind: str, media: Media) -> Attachment:
    final: AttachmentKind = "voice" if kind == "audio" and media.voice else _MEDIA[kind]
    return Attachment(
        kind=final,
        ref=media.id,
        # Only documents carry the sender's file name; fetch names the rest.
        filename=(media.filename or None) if kind == "document" else None,
        mime_type=media.mime_type or None,
        # As given: base64 of the SHA-256 digest (webhooks/reference/messages/image).
        sha256=media.sha256 or None,
    )


def _choice(interactive: Interactive | None) -> tuple[str, Choice] | None:
    if interactive is None:
        return None
    if interactive.type == "button_reply" and interactive.button_reply is not None:
        return "reply button", interactive.button_reply
    if interactive.type == "list_reply" and interactive.list_reply is not None:
        return "list row", interactive.list_reply
    return None


def _cards(
    cards: Sequence[Card], sender_wa_id: str | None
) -> tuple[SharedContact | None, str | None]:
    """The first card as the message's contact; a note listing every card when one
    ``SharedContact`` cannot hold them all (several cards, phones or emails)."""
    first = cards[0]
    phone = first.phones[0] if first.phones else None
    is_sender = first.origin == "contact_request" or (
        sender_wa_id is not None and any(_digits(p.wa_id) == sender_wa_id for p in first.phones)
    )
    contact = SharedContact(
        phone=_card_phone(phone) if phone else None,
        raw_phone=(phone.phone or phone.wa_id) if phone else None,
        name=_card_name(first),
        channel_user_id=_digits(phone.wa_id) if phone else None,
        is_sender=is_sender,
    )
    if len(cards) == 1 and len(first.phones) <= 1 and not first.emails:
        return contact, None
    head = "Shared contact" if len(cards) == 1 else f"Shared {len(cards)} contacts"
    return contact, f"{head}: " + "; ".join(_describe(card) for card in cards)


def _card_phone(phone: CardPhone) -> str | None:
    # The typed number first; WhatsApp's wa_id for it when the typed one has no country.
    typed = e164(phone.phone) if phone.phone else None
    return typed or (e164(phone.wa_id, trusted=True) if phone.wa_id else None)


def _card_name(card: Card) -> str | None:
    n = card.name
    if n is None:
        return None
    return n.formatted_name or " ".join(x for x in (n.first_name, n.last_name) if x) or None


def _describe(card: Card) -> str:
    parts = []
    for p in card.phones:
        number = _card_phone(p) or p.phone or p.wa_id or "?"
        parts.append(f"{number} ({p.type.lower()})" if p.type else number)
    parts += [e.email for e in card.emails if e.email]
    name = _card_name(card) or "Unnamed"
    return f"{name} — {', '.join(parts)}" if parts else name


def _with_phone(sender: Sender, phone: str) -> Sender:
    """The customer shared their own card: its number is theirs. A contact request's card
    carries the customer's WhatsApp number (business-scoped-user-ids, "Requesting phone
    numbers from users")."""
    # Compared by match key: the card may spell an Argentine mobile without the 9.
    if any(i.kind == "phone" and phone_key(i.value) == phone_key(phone) for i in sender.identities):
        return sender
    extra = Identity(kind="phone", value=phone, strength="strong", source="whatsapp_contact")
    return sender.model_copy(update={"identities": (*sender.identities, extra)})


def _status(status: WaStatus, account: str) -> StatusUpdate | None:
    name = _STATUSES.get(status.status)
    if name is None:
        return None  # "played", "deleted" ...: nothing to record on a reply
    error = status.errors[0] if status.errors else None
    title = (error.title or error.message) if error else None
    return StatusUpdate(
        account=account,
        channel=Channel.WHATSAPP,
        dedup_key=f"{status.id}:{status.status}",
        # The same key as the conversation's thread: the phone when shared, else the BSUID.
        thread=_digits(status.recipient_id) or status.recipient_user_id or "",
        occurred_at=status.timestamp,
        external_id=status.id,
        status=name,
        error_code=str(error.code) if error and error.code is not None else None,
        error=scrub(title) if title else None,
        window_closed=name == "failed" and error is not None and error.code in WINDOW_CLOSED,
    )
