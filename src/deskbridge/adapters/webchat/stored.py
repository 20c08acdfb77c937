"""A widget frame as it is kept for re-ingest, and re-ingest's receiver for it.

A frame alone does not say who sent it: the socket's ``hello`` proved that once per
connection. So the kept request carries, beside the frame's exact bytes, the visitor
the gateway established (anonymous id, or the site-verified user), when the frame
arrived, and the uploads its ``files`` ids named then. Raw records are sealed at rest,
so what they say is what the gateway wrote.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import TypeAdapter, ValidationError

from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.webchat.identity import Visitor
from deskbridge.adapters.webchat.parse import message
from deskbridge.errors import ParseFailed, PayloadInvalid, RequestRefused, SignatureInvalid
from deskbridge.schemas import Attachment, Channel, RawRequest

__all__ = ["StoredWebchat", "raw_request"]

VISITOR_HEADER = "x-webchat-visitor"
RECEIVED_HEADER = "x-webchat-received-at"
FILES_HEADER = "x-webchat-files"
_MAX_CHARS = 20000
"""The largest ``max_text_chars``: a kept frame was accepted once, and a lower limit set
since must not refuse it."""
_FILES = TypeAdapter(tuple[Attachment, ...])


def raw_request(
    account: str,
    visitor: Visitor,
    frame: bytes,
    received_at: datetime,
    files: Sequence[Attachment] = (),
) -> RawRequest:
    """How a visitor's frame is kept: its bytes, the visitor, the time and its files."""
    headers = {
        "content-type": "application/json",
        VISITOR_HEADER: json.dumps(dataclasses.asdict(visitor), separators=(",", ":")),
        RECEIVED_HEADER: received_at.isoformat(),
    }
    if files:
        headers[FILES_HEADER] = _FILES.dump_json(tuple(files), exclude_none=True).decode()
    return RawRequest(method="WS", path=f"/widget/v1/{account}/socket", headers=headers, body=frame)


def _visitor(req: RawRequest) -> Visitor:
    given = req.headers.get(VISITOR_HEADER)
    if given is None:
        raise RequestRefused("kept before frames were kept with their visitor")
    try:
        fields = json.loads(given)
        if isinstance(fields, dict) and "email_verified" not in fields:
            # kept before emails were verified on their own: the one a site signed was
            # the hashed subject, i.e. there was no user id
            fields["email_verified"] = bool(fields.get("verified")) and not fields.get("user_id")
        visitor = Visitor(**fields)
    except (ValueError, TypeError) as exc:
        raise ParseFailed("the kept visitor is not readable") from exc
    if not isinstance(visitor.id, str) or not visitor.id:
        raise ParseFailed("the kept visitor has no id")
    return visitor


class StoredWebchat:
    """Re-ingest's receiver for the widget, which has no webhook URL and so no entry in
    the receivers' registry: a kept frame (``raw_request``) is parsed again as the socket
    took it. Never reachable over HTTP: ``verify`` refuses everything."""

    channel = Channel.WEBCHAT
    max_body_bytes = 64 * 1024
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account: str) -> None:
        self._account = account

    def handshake(self, req: RawRequest) -> Handshake | None:
        return None

    def verify(self, req: RawRequest) -> None:
        raise SignatureInvalid("widget frames arrive on the widget's socket only")

    def parse(self, req: RawRequest) -> Parsed:
        """The frame's message, as the socket made it. Raises ``RequestRefused`` for a
        record kept without its visitor, ``ParseFailed`` for one that does not read."""
        visitor = _visitor(req)
        try:
            received_at = datetime.fromisoformat(req.headers[RECEIVED_HEADER])
        except (KeyError, ValueError):
            received_at = datetime.now(UTC)
        try:
            frame = json.loads(req.body)
            files = _FILES.validate_json(req.headers.get(FILES_HEADER, "[]"))
        except (ValueError, ValidationError) as exc:
            raise ParseFailed(f"not a widget frame: {type(exc).__name__}") from None
        if not isinstance(frame, dict):
            raise ParseFailed("not a widget frame: not an object")
        try:
            msg = message(
                self._account, visitor, frame, now=received_at, max_chars=_MAX_CHARS, files=files
            )
        except PayloadInvalid as exc:
            raise ParseFailed(str(exc)) from None
        return Parsed([msg])
