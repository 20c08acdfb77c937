"""The stored form of an event record: JSON around the event's own serialization.

Written by the intake script's caller (``Intake.accept``) and, for an event whose parse
was deferred, by the worker (``DeliveryStore.materialize``): both write the same bytes
for the same event, so every reader sees one format.
"""

from __future__ import annotations

from deskbridge.schemas import (
    AgentReply,
    CallEvent,
    ChannelEvent,
    DeskNote,
    Message,
    StatusUpdate,
)

__all__ = ["StoredEvent", "event_record", "record_head"]

StoredEvent = Message | StatusUpdate | CallEvent | ChannelEvent | AgentReply | DeskNote


def record_head(raw_id: str | None, received_at: float) -> bytes:
    """What every event record of one request starts with (built once per request)."""
    head = b'{"raw_id":' + (f'"{raw_id}"'.encode() if raw_id is not None else b"null")
    return head + b',"received_at":' + repr(received_at).encode()


def event_record(head: bytes, event_id: str, event: StoredEvent) -> bytes:
    """The record of ``event`` (its first delivery shares its id): JSON built around
    pydantic-core's serialization of the event, not a dict round trip through
    ``json.dumps``, which costs twice as much on the ack path."""
    return (
        head
        + f',"event_id":"{event_id}","delivery_id":"{event_id}","event":'.encode()
        + event.__pydantic_serializer__.to_json(event)
        + b"}"
    )
