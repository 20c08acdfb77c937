"""The SIP channel: SIP MESSAGE texts in and out, calls logged on the ticket.

No maintained Python SIP stack exists, so this is a small, strict one: ``message``
(parser and serializer), ``uri`` (sip/tel URIs, E.164), ``transaction`` (server and
client transactions with RFC 3261 timers), ``transport`` (UDP/TCP/TLS listeners),
``server`` (the UAS core), ``digest`` (answering challenges), ``receiver`` (requests to
events) and ``adapter`` (replies out).
"""

from deskbridge.adapters.sip.adapter import SipAdapter
from deskbridge.adapters.sip.receiver import SipReceiver
from deskbridge.adapters.sip.server import SipService
from deskbridge.adapters.sip.spec import SPEC
from deskbridge.adapters.sip.transport import Listener, start_listener

__all__ = ["SPEC", "Listener", "SipAdapter", "SipReceiver", "SipService", "start_listener"]
