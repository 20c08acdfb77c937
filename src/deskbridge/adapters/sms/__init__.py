"""SMS and MMS, one channel with a provider per account: Twilio Programmable Messaging
(the modules here) or the Vonage Messages API (``vonage/``). What both share is in
``common`` (keywords and consent, the sender's identity, sender choice, media downloads),
``segments`` (GSM-7/UCS-2) and ``base`` (the adapter's send template, the receiver).

Twilio, per Twilio's docs:

- webhooks: twilio.com/docs/messaging/guides/webhook-request (inbound parameters) and
  twilio.com/docs/usage/webhooks/webhooks-security (``X-Twilio-Signature``);
- status callbacks: twilio.com/docs/messaging/guides/track-outbound-message-status;
- sending: twilio.com/docs/messaging/api/message-resource (``Messages.json``: ``To``,
  ``From`` or ``MessagingServiceSid``, ``Body``, ``MediaUrl``, ``StatusCallback``);
- opt-out keywords: twilio.com/docs/messaging/tutorials/advanced-opt-out;
- segments: twilio.com/docs/glossary/what-sms-character-limit.

One webhook URL per account (``SmsReceiver``); replies from the number the customer
wrote to, else the sender configured for their country (``SmsAdapter``). See
docs/channels/sms.md.
"""

from deskbridge.adapters.sms.adapter import SmsAdapter
from deskbridge.adapters.sms.receiver import SmsReceiver
from deskbridge.adapters.sms.simulate import sample_message, sample_status
from deskbridge.adapters.sms.spec import SPEC

__all__ = ["SPEC", "SmsAdapter", "SmsReceiver", "sample_message", "sample_status"]
