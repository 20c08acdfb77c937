"""Zendesk Support as a desk: files channel messages as the end user's tickets and relays
agents' public comments back.

Follows the Zendesk developer documentation:

* Ticketing API — Users (``users/create_or_update``), User Identities, Tickets (create,
  update, ``via_followup_source_id``, ``external_id`` lookup), Ticket Comments, Ticket
  Audits, Attachments/Uploads: https://developer.zendesk.com/api-reference/ticketing/
* Idempotency-Key on ticket creation (kept 2 hours) and rate limits (429 + Retry-After):
  https://developer.zendesk.com/api-reference/introduction/
* Webhooks API (create, list, patch, signing secret):
  https://developer.zendesk.com/api-reference/webhooks/webhooks-api/webhooks/
* Ticket event ``zen:event-type:ticket.comment_added``:
  https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/
* Verifying webhook authenticity (base64 HMAC-SHA256 of timestamp + body):
  https://developer.zendesk.com/documentation/webhooks/verifying/
* Placeholders for the trigger body: https://support.zendesk.com/hc/en-us/articles/4408886858138

What could not be verified is listed in ``docs/desks/zendesk.md``.
"""

from deskbridge.outbound.zendesk.connector import MAX_ATTACHMENT_BYTES, ZendeskConnector
from deskbridge.outbound.zendesk.spec import SPEC

__all__ = ["MAX_ATTACHMENT_BYTES", "SPEC", "ZendeskConnector"]
