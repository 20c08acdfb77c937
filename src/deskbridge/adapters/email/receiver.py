"""One account's support address: the provider's inbound-parse webhook verified and
parsed into events, each mail placed in its conversation by its ticket token.

The thread of a mail is its ticket token, found without any lookup: in a plus address
(``support+<token>@domain``, our Reply-To), in the ``[#<token>]`` of the subject, or in
the References/In-Reply-To of a reply, since our own Message-IDs carry the token
(``t.<token>.<random>@domain``, so Outlook replies that drop In-Reply-To still thread).
A new mail gets a token derived from its Message-ID, so a redelivery lands in the same
conversation.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.email import webhooks
from deskbridge.adapters.email.mime import ParsedMail, parse_mail
from deskbridge.config.accounts import EmailConfig
from deskbridge.errors import PayloadInvalid, SignatureInvalid
from deskbridge.schemas import Attachment, Channel, RawRequest, StatusUpdate

__all__ = ["EmailReceiver", "message_id_for", "token_in_message_id"]

WHOLE_MAIL = "mime:whole"
_OUR_ID = re.compile(r"^t\.([A-Za-z0-9]{16,64})\.[A-Za-z0-9]+@(.+)$")


ORIGINAL = Attachment(
    kind="document", ref=WHOLE_MAIL, filename="original-message.eml", mime_type="message/rfc822"
)


def message_id_for(token: str, unique: str, domain: str) -> str:
    """Our Message-ID for a reply in ticket ``token`` (without angle brackets)."""
    return f"t.{token}.{unique}@{domain}"


def token_in_message_id(message_id: str, domains: frozenset[str]) -> str | None:
    m = _OUR_ID.match(message_id)
    return m.group(1) if m and m.group(2).lower() in domains else None


_DO_NOT_RETRY = {
    "mailgun": webhooks.MAILGUN_REJECT_STATUS,
    "postmark": webhooks.POSTMARK_STOP_STATUS,
}


class _Refused(PayloadInvalid):
    """A malformed body, answered with the provider's status that stops its retries."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _new_token(account: str, dedup_key: str) -> str:
    return hashlib.sha256(f"{account}\x1f{dedup_key}".encode()).hexdigest()[:24]


class EmailReceiver:
    """Verifies and parses the account's inbound-parse webhook (``config.inbound``)."""

    channel: ClassVar[Channel] = Channel.EMAIL
    # SendGrid and Postmark: basic auth. Mailgun signs its body (an HMAC, kept).
    secret_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, account: str, config: EmailConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.account = account
        self.max_body_bytes = config.max_body_bytes
        self._config = config
        self._domains = config.domains()
        self._trusted = frozenset(config.trusted_authserv_ids)
        self._clock = clock

    def handshake(self, req: RawRequest) -> Handshake | None:
        return None

    def verify(self, req: RawRequest) -> None:
        """Mailgun: the signed timestamp and token (in the body); SendGrid: its security
        policy's signature and/or OAuth bearer when configured, else basic auth; Postmark:
        basic auth. Raises ``SignatureInvalid``."""
        c = self._config
        if c.inbound == "smtp":
            raise SignatureInvalid("this address takes mail by SMTP, not by webhook")
        if c.inbound == "mailgun":
            key = c.mailgun_signing_key.get_secret_value() if c.mailgun_signing_key else ""
            form = webhooks.parse_form(req)
            fields = {k: form.text(k) or "" for k in ("timestamp", "token", "signature")}
            webhooks.verify_mailgun(fields, key, now=self._clock())
        elif c.inbound == "sendgrid" and (c.sendgrid_public_key or c.sendgrid_oauth_key):
            # the security policy: every mechanism it names must pass
            if c.sendgrid_public_key:
                webhooks.verify_sendgrid_signature(req.headers, req.body, c.sendgrid_public_key)
            if c.sendgrid_oauth_key:
                webhooks.verify_bearer_jwt(req.headers, c.sendgrid_oauth_key.get_secret_value())
        else:
            password = c.basic_auth_password.get_secret_value() if c.basic_auth_password else ""
            webhooks.verify_basic_auth(req.headers, c.basic_auth_user or "", password)

    def parse(self, req: RawRequest) -> Parsed:
        """The mail as a message (or a bounce as a failed status of our reply); auto-replies,
        our own mail and bounces of mail we did not send give no event and a named reason
        in ``Parsed.ignored``, so they never open tickets or get answers. A body the
        provider should not send again is refused with its "do not retry" status (Mailgun
        406, Postmark 403)."""
        try:
            return self._parse(req)
        except PayloadInvalid as exc:
            status = _DO_NOT_RETRY.get(self._config.inbound)
            if status is None:
                raise
            raise _Refused(str(exc), status) from None

    def _parse(self, req: RawRequest) -> Parsed:
        at = datetime.fromtimestamp(self._clock(), UTC)
        a, own, trusted = self.account, self._domains, self._trusted
        inbound = self._config.inbound
        if inbound == "mailgun":
            token, mail = webhooks.parse_mailgun(
                req, account=a, received_at=at, own_domains=own, trusted_authserv_ids=trusted
            )
            # Mailgun signs only timestamp + token, not the mail, and does not say a retry
            # keeps its token: the mail's own key (Message-ID) deduplicates, and the token is
            # bound to that key so a captured signature never brings another mail
            parsed = self._events(mail)
            key = mail.message.dedup_key if mail.message else ""
            bound = hashlib.sha256(f"{self.account}\x1f{key}".encode()).hexdigest()
            return Parsed(events=parsed.events, ignored=parsed.ignored, token=(token, bound))
        elif inbound == "smtp":
            mail = parse_mail(
                req.body, account=a, received_at=at, own_domains=own, trusted_authserv_ids=trusted
            )
        elif inbound == "sendgrid":
            mail = webhooks.parse_sendgrid(
                req, account=a, received_at=at, own_domains=own, trusted_authserv_ids=trusted
            )
        else:
            _, mail = webhooks.parse_postmark(
                req, account=a, received_at=at, own_domains=own, trusted_authserv_ids=trusted
            )
        return self._events(mail)

    def accepts(self, address: str) -> bool:
        """Whether ``address`` (normalized) is this support address or one of its plus
        forms: the SMTP listener takes no other mail (never an open relay)."""
        local, _, domain = self._config.address.lower().partition("@")
        got_local, _, got_domain = address.lower().partition("@")
        return got_domain == domain and (got_local == local or got_local.startswith(local + "+"))

    def serves_domain(self, address: str) -> bool:
        """Whether ``address`` (normalized) is on this support address's domain (for
        ``postmaster@``, which RFC 5321 says must be accepted)."""
        return address.lower().partition("@")[2] == self._config.address.lower().partition("@")[2]

    def _token(self, mail: ParsedMail, dedup_key: str) -> str:
        if mail.reply_to_token:
            return mail.reply_to_token
        for ref in (*reversed(mail.references), *mail.in_reply_to):
            token = token_in_message_id(ref, self._domains)
            if token:
                return token
        return _new_token(self.account, dedup_key)

    def _events(self, mail: ParsedMail) -> Parsed:
        msg = mail.message
        if msg is None:
            return Parsed(events=[], ignored=("no_headers",))
        if mail.kind in ("auto_reply", "own"):
            return Parsed(events=[], ignored=("own_mail" if mail.kind == "own" else "auto_reply",))
        if mail.kind == "bounce":
            bounced = mail.bounced_message_id
            token = token_in_message_id(bounced, self._domains) if bounced else None
            if not bounced or token is None:
                # a bounce of mail we did not send
                return Parsed(events=[], ignored=("bounce_not_ours",))
            return Parsed(
                events=[
                    StatusUpdate(
                        account=self.account,
                        channel=Channel.EMAIL,
                        dedup_key=f"bounce:{msg.dedup_key}",
                        thread=token,
                        occurred_at=msg.occurred_at,
                        external_id=bounced,
                        status="failed",
                        error=mail.bounce_reason,
                    )
                ]
            )
        token = self._token(mail, msg.dedup_key)
        context = {
            # no address to answer: the reply fails for good and the agent gets a note
            "to": msg.sender.external_id if mail.sender_known else "",
            "subject": mail.subject,
            "message_id": mail.message_id or "",
            "references": " ".join(
                (*mail.references, *([mail.message_id] if mail.message_id else []))
            ),
        }
        attachments = msg.attachments
        if mail.full_text.strip() != msg.text.strip():
            # the agent reads the new text; the whole mail, quoted history included, stays
            # one click away (read back from the stored request like any attachment)
            attachments += (ORIGINAL,)
        return Parsed(
            events=[
                msg.model_copy(
                    update={"thread": token, "context": context, "attachments": attachments}
                )
            ]
        )
