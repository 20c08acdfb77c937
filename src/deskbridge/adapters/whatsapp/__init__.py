"""WhatsApp, per Meta's WhatsApp Business Platform (Cloud API) docs on
developers.facebook.com/documentation/business-messaging/whatsapp: webhooks/reference/messages
(and its text, image, audio, video, document, sticker, location, contacts, interactive,
unsupported and status pages), business-scoped-user-ids, messages/send-messages,
business-phone-numbers/media and support/error-codes.

One Meta app posts every number it serves to one URL, signed with ``X-Hub-Signature-256``
(``WhatsAppReceiver``, routed on ``phone_number_id``); replies, templates and media go
through the Graph API with the account's bearer token (``WhatsAppAdapter``).
"""

from deskbridge.adapters.whatsapp.adapter import WhatsAppAdapter
from deskbridge.adapters.whatsapp.receiver import WhatsAppReceiver
from deskbridge.adapters.whatsapp.simulate import sample_message
from deskbridge.adapters.whatsapp.spec import SPEC

__all__ = ["SPEC", "WhatsAppAdapter", "WhatsAppReceiver", "sample_message"]
