"""Optional channel capabilities (placeholder until the declared set lands)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from deskbridge.schemas import Attachment, Message, RawRequest, Upload

__all__ = ["AuthenticatesSender", "FilesFromRequest", "LooksUpDisplayNames"]


@runtime_checkable
class AuthenticatesSender(Protocol):
    async def authenticate_sender(self, req: RawRequest, msg: Message) -> Message: ...


@runtime_checkable
class FilesFromRequest(Protocol):
    def file_from_request(self, req: RawRequest, attachment: Attachment) -> Upload: ...


@runtime_checkable
class LooksUpDisplayNames(Protocol):
    async def display_name(self, user_id: str, thread: str) -> str | None: ...
