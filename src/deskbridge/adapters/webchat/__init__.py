"""The website chat widget: a one-file script served by deskbridge
(``/widget/v1/deskbridge-chat.js``), one WebSocket per visitor (``gateway/webchat.py``),
the visitor's conversation kept in Redis (``store/webchat.py``).

Identity follows Intercom's identity verification
(developers.intercom.com/installing-intercom/web/identity-verification): the site's
backend computes ``HMAC-SHA256(secret, user id or email)`` and the widget passes it as
``user_hash``. See docs/channels/webchat.md.
"""

from deskbridge.adapters.webchat.adapter import WebchatAdapter
from deskbridge.adapters.webchat.identity import Visitor, anonymous, user_hash, verified
from deskbridge.adapters.webchat.parse import message
from deskbridge.adapters.webchat.spec import SPEC

__all__ = ["SPEC", "Visitor", "WebchatAdapter", "anonymous", "message", "user_hash", "verified"]
