"""SMS and MMS through the Vonage Messages API, behind the same ``sms`` channel
(``provider: vonage``), per Vonage's docs:

- webhooks: developer.vonage.com/en/api/messages (inbound message and message status,
  v1) and .../getting-started/concepts/webhooks#decoding-signed-webhooks (the JWT);
- sending: ``POST /v1/messages`` with the application's JWT;
- webhook URLs: the Applications API (``PUT /v2/applications/<id>``);
- errors: developer.vonage.com/en/api-errors/messages.

Keywords, consent, the sender's identity, sender choice and segments are the Twilio
path's (``adapters.sms.common``, ``adapters.sms.segments``). See docs/channels/sms.md.
"""

from deskbridge.adapters.sms.vonage.adapter import VonageSmsAdapter
from deskbridge.adapters.sms.vonage.receiver import VonageSmsReceiver
from deskbridge.adapters.sms.vonage.signature import sign
from deskbridge.adapters.sms.vonage.simulate import sample_inbound, sample_status

__all__ = ["VonageSmsAdapter", "VonageSmsReceiver", "sample_inbound", "sample_status", "sign"]
