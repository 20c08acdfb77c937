"""Facebook Messenger, per Meta's Messenger Platform docs:

- webhooks: https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks
  and its event references (``webhook-events/messages``, ``message-echoes``,
  ``messaging_postbacks``, ``message-deliveries``, ``message-reads``);
- sending: https://developers.facebook.com/docs/messenger-platform/reference/send-api and
  ``send-messages/message-tags`` (the 24-hour window, ``HUMAN_AGENT`` up to 7 days);
- errors: https://developers.facebook.com/documentation/business-messaging/messenger-platform/error-codes

One Meta app posts every Page it serves to one URL, signed with ``X-Hub-Signature-256``
(``MessengerReceiver``, routed by Page id); each account's Page replies through the Send
API with its Page access token (``MessengerAdapter``), attachments going by URL.
"""

from deskbridge.adapters.messenger.adapter import MessengerAdapter
from deskbridge.adapters.messenger.receiver import MessengerReceiver
from deskbridge.adapters.messenger.simulate import sample_message
from deskbridge.adapters.messenger.spec import SPEC

__all__ = ["SPEC", "MessengerAdapter", "MessengerReceiver", "sample_message"]
