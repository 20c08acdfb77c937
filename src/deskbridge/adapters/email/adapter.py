"""One account's support address, outbound: the agent's reply as a threaded email."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import ClassVar

from deskbridge.adapters.base import Progress, send_parts
from deskbridge.adapters.capabilities import AuthenticatesSender, FilesFromRequest
from deskbridge.adapters.email import webhooks
from deskbridge.adapters.email.compose import Thread, compose_reply, reply_subject
from deskbridge.adapters.email.dkim_check import DnsFunc, dkim_aligned
from deskbridge.adapters.email.mime import part_content
from deskbridge.adapters.email.receiver import WHOLE_MAIL, message_id_for
from deskbridge.adapters.email.smtp import SmtpServer, send_mail
from deskbridge.config.accounts import EmailConfig
from deskbridge.errors import ParseFailed, PayloadInvalid, PermanentError
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    Message,
    RawRequest,
    SendReceipt,
    Upload,
)

__all__ = ["EmailAdapter"]

Deliver = Callable[[EmailMessage], Awaitable[None]]


class EmailAdapter(AuthenticatesSender, FilesFromRequest):
    """``deliver`` hands a composed mail over: SMTP (``config.smtp``) unless the runtime
    gives another (the sandbox records it instead)."""

    channel: ClassVar[Channel] = Channel.EMAIL
    takes_files: ClassVar[bool] = True

    def __init__(
        self,
        account: str,
        config: EmailConfig,
        *,
        deliver: Deliver | None = None,
        dnsfunc: DnsFunc | None = None,
    ) -> None:
        self.account = account
        self._config = config
        self._dnsfunc = dnsfunc
        self._local, _, self._domain = config.address.partition("@")
        if deliver is None:
            smtp = config.smtp
            if smtp is None:
                raise ValueError("an email channel without smtp needs a deliver function")
            server = SmtpServer(
                host=smtp.host,
                port=smtp.port,
                security=smtp.security,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
            )

            async def deliver_smtp(msg: EmailMessage) -> None:
                await send_mail(msg, server)

            deliver = deliver_smtp
        self._deliver = deliver

    async def fetch(self, attachment: Attachment) -> Upload:
        # a mail's files travel inside the request itself: see file_from_request
        raise PermanentError("email attachments are read from the stored mail")

    def _mime(self, req: RawRequest) -> bytes:
        inbound = self._config.inbound
        if inbound == "mailgun":
            return webhooks.mailgun_raw(req)[1]
        if inbound == "sendgrid":
            return webhooks.sendgrid_raw(req)[1]
        if inbound == "postmark":
            return webhooks.postmark_raw(req)[1]
        return req.body  # SMTP: the request is the mail

    async def authenticate_sender(self, req: RawRequest, msg: Message) -> Message:
        """With ``verify_dkim``, an aligned DKIM pass makes the sender's (weak) address
        strong. DNS lookups run in a thread; any failure leaves the message as it was."""
        weak = [i for i in msg.sender.identities if i.kind == "email" and i.strength == "weak"]
        if not self._config.verify_dkim or not weak:
            return msg
        domain = weak[0].value.rpartition("@")[2]
        try:
            raw = self._mime(req)
        except (PayloadInvalid, ParseFailed):
            return msg
        if not await asyncio.to_thread(dkim_aligned, raw, domain, dnsfunc=self._dnsfunc):
            return msg
        identities = tuple(
            i.model_copy(update={"strength": "strong", "source": "email_dkim"}) if i in weak else i
            for i in msg.sender.identities
        )
        return msg.model_copy(
            update={"sender": msg.sender.model_copy(update={"identities": identities})}
        )

    def file_from_request(self, req: RawRequest, attachment: Attachment) -> Upload:
        """An inbound attachment read back from the stored provider request (Mailgun's
        ``body-mime``, SendGrid's ``email``, Postmark's JSON). Raises ``PermanentError``
        when the part is gone or too large."""
        try:
            raw = self._mime(req)
            if attachment.ref == WHOLE_MAIL:
                return Upload(filename="original-message.eml", mime_type="message/rfc822", data=raw)
            found = part_content(raw, attachment.ref)
        except (PayloadInvalid, ParseFailed) as exc:
            raise PermanentError(f"email: the stored mail cannot be read ({exc})") from None
        if found is None:
            raise PermanentError("email: the attachment is not in the stored mail")
        data, content_type = found
        if len(data) > self._config.max_media_bytes:
            raise PermanentError(f"email: attachment over {self._config.max_media_bytes} bytes")
        return Upload(
            filename=attachment.filename or "attachment",
            mime_type=attachment.mime_type or content_type,
            data=data,
        )

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        """One mail (one part): threaded under the customer's last message, Reply-To and
        subject carrying the ticket token, our Message-ID carrying it too. The Message-ID
        is the same for every attempt at the same reply, so a mail sent again after an
        unknown outcome (SMTP has no idempotency key; counted) is recognisably the same
        mail to the customer's mail client."""
        token = to.thread
        ctx = to.context
        recipient = ctx.get("to")
        if not recipient:
            raise PermanentError("email: the conversation has no customer address")
        subject = reply_subject(ctx.get("subject", ""))
        if f"[#{token}]" not in subject:
            subject = f"{subject} [#{token}]"
        unique = hashlib.sha256(f"{self.account}\x1f{reply.dedup_key}".encode()).hexdigest()
        message_id = message_id_for(token, unique[:16], self._domain)
        msg = compose_reply(
            reply,
            sender=self._config.address,
            sender_name=self._config.from_name,
            to=recipient,
            thread=Thread(
                subject=subject,
                message_id=ctx.get("message_id") or None,
                references=tuple(ctx.get("references", "").split()),
            ),
            reply_to=f"{self._local}+{token}@{self._domain}",
            domain=self._domain,
            files=files,
            message_id=message_id,
        )

        async def deliver() -> str:
            await self._deliver(msg)
            return message_id

        return SendReceipt(external_ids=await send_parts(progress, [deliver]))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise PermanentError("email has no reply window")
