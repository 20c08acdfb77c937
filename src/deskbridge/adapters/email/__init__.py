"""Email: one MIME parser shared by the SMTP listener and the raw-MIME webhooks
(Mailgun, SendGrid, Postmark); see ``/work/shared/PROTOCOLS.md`` §5 and the RFCs named in
:mod:`deskbridge.adapters.email.mime`.
"""

from deskbridge.adapters.email.mime import (
    MailKind,
    ParsedMail,
    normalize_address,
    parse_mail,
    part_content,
)
from deskbridge.adapters.email.quotes import render_quote_strip
from deskbridge.adapters.email.spec import SPEC

__all__ = [
    "SPEC",
    "MailKind",
    "ParsedMail",
    "normalize_address",
    "parse_mail",
    "part_content",
    "render_quote_strip",
]
