"""What a channel adapter may do beyond ``ChannelAdapter`` (``adapters.base``).

A new channel implements ``ChannelAdapter`` and a ``Receiver`` (or a ``WebhookParser``);
everything here is optional. An adapter declares each capability it has by subclassing
its protocol (``class LineAdapter(LooksUpDisplayNames, ReportsHealth, RegistersWebhook)``),
so mypy checks the signatures; the flows ask ``isinstance(adapter, ReportsHealth)``,
never ``getattr``.

- ``ReportsHealth``: what the platform says about our side, polled by the worker.
- ``AuthenticatesSender``: a sender check that needs the network (email's DKIM), run in
  the worker, never on the acknowledgement path.
- ``FilesFromRequest``: files that travel inside the stored request (email) instead of
  being downloaded with ``fetch``.
- ``LooksUpDisplayNames``: a name for senders the channel sends without one (LINE).
- ``RegistersWebhook``: what ``deskbridge channels register`` calls to point the
  platform's webhook at us.
- ``RegistersAppWebhook``: the same for a channel whose webhook is its platform app's
  (Meta): the app's callback once per app, then the account's subscription to the app.
- ``OffersChoices``: the channel shows ``AgentReply.choices`` as its own tappable
  controls, and a tap comes back as a message whose text is the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeGuard, runtime_checkable

from deskbridge.config.accounts import MetaAppConfig
from deskbridge.schemas import Attachment, Message, RawRequest, Upload

__all__ = [
    "AuthenticatesSender",
    "FilesFromRequest",
    "LooksUpDisplayNames",
    "OffersChoices",
    "Registered",
    "RegistersAppWebhook",
    "RegistersWebhook",
    "ReportsHealth",
    "authenticates_sender",
    "capable",
]


@runtime_checkable
class ReportsHealth(Protocol):
    """A channel that can tell how its platform sees our credentials and webhook."""

    async def health(self) -> dict[str, float]:
        """Named gauges (``credentials_valid`` 1.0 when the platform accepts us). Raises
        ``PermanentError`` (401/403: credentials refused) or ``RetryableError``."""
        ...


@runtime_checkable
class AuthenticatesSender(Protocol):
    """A channel whose sender can be authenticated only with network lookups."""

    async def authenticate_sender(self, req: RawRequest, msg: Message) -> Message:
        """``msg`` with its sender's identities made strong where the check on the stored
        request ``req`` passes; any failure leaves ``msg`` as it was (never raises)."""
        ...


@runtime_checkable
class FilesFromRequest(Protocol):
    """A channel whose files travel inside the inbound request itself."""

    def file_from_request(self, req: RawRequest, attachment: Attachment) -> Upload:
        """The bytes of ``attachment`` read from the stored request ``req``. Raises
        ``PermanentError`` when the file is not in it or is over the size cap."""
        ...


@runtime_checkable
class LooksUpDisplayNames(Protocol):
    """A channel that sends senders without a name, but can be asked for one."""

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """The name of ``user_id`` as seen in conversation ``thread``, or None. Never
        raises: a failed lookup means no name."""
        ...


@runtime_checkable
class RegistersWebhook(Protocol):
    """A channel whose platform has an API to set the webhook URL."""

    async def set_webhook(self, url: str) -> None:
        """Point the platform's webhook for this account at ``url`` (with our secret
        where the platform takes one). Idempotent. Raises ``DeliveryError``."""
        ...


@dataclass(frozen=True, slots=True)
class Registered:
    """What one registration step did, as ``channels register`` prints it."""

    said: str
    manual: bool = False
    """The platform's API cannot do this step: ``said`` tells what to set by hand."""


@runtime_checkable
class RegistersAppWebhook(Protocol):
    """A channel whose webhook belongs to the platform app serving many accounts (a Meta
    app: one callback URL per product, to which each account subscribes)."""

    async def set_app_webhook(self, app: MetaAppConfig, url: str) -> Registered:
        """Point the app's webhook for this channel's product at ``url``, or say what to
        set by hand where the platform's API cannot. Idempotent: reads first. Raises
        ``DeliveryError``."""
        ...

    async def subscribe_to_app(self, app: MetaAppConfig) -> Registered:
        """Subscribe this account to the app's webhooks. Idempotent: reads first. Raises
        ``DeliveryError``."""
        ...


@runtime_checkable
class OffersChoices(Protocol):
    """A channel with native quick replies (Telegram's reply keyboard, Messenger's and
    LINE's quick replies, WhatsApp's interactive list). Other channels get the choices
    as numbered lines of the text (``flows.replies``)."""

    max_choices: ClassVar[int]
    """How many choices one message can offer (more are sent as numbered lines)."""


_CAPABLE: dict[tuple[type, Any], bool] = {}


def capable(obj: object, capability: Any) -> bool:
    """``isinstance(obj, capability)`` for a capability protocol, answered once per class.
    A runtime protocol's ``isinstance`` walks the protocol's members on every call (on
    Python 3.11: several microseconds, on every filed message); adapters and desks
    declare what they can do by subclassing, which is the same for every instance of a
    class."""
    key = (type(obj), capability)
    found = _CAPABLE.get(key)
    if found is None:
        found = _CAPABLE[key] = isinstance(obj, capability)
    return found


def authenticates_sender(adapter: object) -> TypeGuard[AuthenticatesSender]:
    """Whether ``adapter`` is an ``AuthenticatesSender`` (``capable``)."""
    return capable(adapter, AuthenticatesSender)
