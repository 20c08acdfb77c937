from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    InboundEvent,
    RawRequest,
    SendReceipt,
    Upload,
)

__all__ = ["ChannelAdapter", "Handshake"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """The answer to a platform's verification request (Meta's ``hub.challenge`` GET)."""

    status: int
    body: str
    content_type: str = "text/plain"


class ChannelAdapter(Protocol):
    """One configured channel of one account.

    ``verify`` and ``parse`` are pure: bytes and headers in, events or a typed error out.
    ``send`` and ``fetch`` are the only I/O, through the injected ``httpx.AsyncClient``,
    and raise ``RetryableError``/``PermanentError`` (via ``deskbridge.http.classify``).
    """

    channel: ClassVar[Channel]
    account: str
    max_body_bytes: int

    def handshake(self, req: RawRequest) -> Handshake | None:
        """Answer a verification GET, or None when the channel has no handshake."""
        ...

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the request carries the channel's proof."""
        ...

    def parse(self, req: RawRequest) -> list[InboundEvent]:
        """Events in the body (``[]`` for valid events we do not handle).

        Raises ``PayloadInvalid`` for a body that is not what the channel sends at all (not
        JSON), ``ParseFailed`` for a body of the channel's shape we cannot handle.
        """
        ...

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an inbound attachment's bytes (size-capped)."""
        ...

    async def send(
        self, reply: AgentReply, to: ChannelAddress, files: Sequence[Upload]
    ) -> SendReceipt:
        """Send an agent's reply (text and files), obeying the channel's limits."""
        ...
