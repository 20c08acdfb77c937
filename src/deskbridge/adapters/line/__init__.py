"""LINE, per the Messaging API docs at https://developers.line.biz/en/reference/messaging-api/
and the OpenAPI files of line/line-openapi (``webhook.yml``, ``messaging-api.yml``,
``channel-access-token.yml``):

- webhooks: ``verify-webhook-signature`` (Base64 HMAC-SHA256 in ``x-line-signature``),
  ``receiving-messages`` and the webhook event objects; several events per request,
  ``webhookEventId`` as the dedup key (kept on redelivery);
- sending: ``send-reply-message`` (free, one use, within a minute of the event) and
  ``send-push-message`` (counts against the plan's quota) with ``retrying-api-request``
  (``X-Line-Retry-Key``, 409 on a repeat);
- content: ``get-content`` on ``api-data.line.me``; profiles: ``get-profile``,
  ``get-group-member-profile``, ``get-room-member-profile``;
- tokens: a long-lived channel access token, or ``generate-json-web-token`` (v2.1).

One webhook URL per channel (account), like Telegram: ``LineAdapter`` is both the parser
of that URL and the account's outbound adapter.
"""

from deskbridge.adapters.line.adapter import LineAdapter
from deskbridge.adapters.line.simulate import sample_message
from deskbridge.adapters.line.spec import SPEC

__all__ = ["SPEC", "LineAdapter", "sample_message"]
