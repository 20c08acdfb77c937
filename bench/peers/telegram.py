"""The Telegram Update model the peers validate webhook bodies with: the fields a team
would declare for private-chat text messages, nothing more."""

from __future__ import annotations

from pydantic import BaseModel, Field


class User(BaseModel):
    id: int
    is_bot: bool = False
    first_name: str = ""
    language_code: str | None = None


class Chat(BaseModel):
    id: int
    type: str
    first_name: str | None = None


class Message(BaseModel):
    message_id: int
    date: int
    chat: Chat
    from_: User | None = Field(default=None, alias="from")
    text: str | None = None


class Update(BaseModel):
    update_id: int
    message: Message | None = None
