"""Intercom as a desk: files channel messages as the contact's conversation and relays
teammates' (and bots') replies back.

Follows Intercom's REST API reference (https://developers.intercom.com/docs/references/,
version pinned by ``Intercom-Version``; the OpenAPI descriptions in
github.com/intercom/Intercom-OpenAPI):

* Contacts: ``GET /contacts/find_by_external_id/{external_id}`` (users only),
  ``POST /contacts``, ``PUT /contacts/{id}``, ``POST /contacts/search`` (leads).
* Conversations: ``POST /conversations`` (from the contact; plain text),
  ``POST /conversations/{id}/reply`` (``type: user`` with ``attachment_files``, and
  ``type: admin`` notes), ``POST /conversations/search`` (retried first messages).
* Rate limits: ``X-RateLimit-Limit/-Remaining/-Reset`` and 429.
* Webhooks: topics ``conversation.admin.replied`` / ``.noted`` / ``.closed``, signed
  with ``X-Hub-Signature: sha1=<hex HMAC-SHA1(client_secret, body)>``.

What could not be verified is listed in ``docs/desks/intercom.md``.
"""

from deskbridge.outbound.intercom.connector import (
    EMAILS_ATTRIBUTE,
    FILES_PER_PART,
    MAX_ATTACHMENT_BYTES,
    PHONES_ATTRIBUTE,
    IntercomConnector,
)
from deskbridge.outbound.intercom.spec import SPEC
from deskbridge.outbound.intercom.throttle import Throttle

__all__ = [
    "EMAILS_ATTRIBUTE",
    "FILES_PER_PART",
    "MAX_ATTACHMENT_BYTES",
    "PHONES_ATTRIBUTE",
    "SPEC",
    "IntercomConnector",
    "Throttle",
]
