"""Udesk as a desk: files channel messages as the customer's tickets and replies, and
brings agents' public replies back by polling the replies of recently active tickets
(Udesk has no ticket-reply callback) or from a trigger that calls our callback URL.

Follows the Udesk Open API v2 documentation:

* Call format and signature (``sign = sha256(email&open_api_token&timestamp&nonce&v2)``,
  nonce once in 15 minutes, 60 calls per minute per API): https://www.udesk.cn/doc/apiv2/intro/
* Customers (``POST /customers`` with ``cellphones`` and ``other_emails``):
  https://www.udesk.cn/doc/apiv2/customers/
* Tickets (``POST /tickets`` with ``type``/``type_content``, ``{code: 1000, ticket_id}``):
  https://www.udesk.cn/doc/apiv2/tickets/
* Event callbacks (no ticket-reply event, no signature): https://www.udesk.cn/doc/apiv2/webhook_v2
* The English mirror: https://www.udeskglobal.com/doc/apiv2/

What could not be verified at the source is listed in ``docs/desks/udesk.md``.
"""

from deskbridge.outbound.udesk.connector import Polled, UdeskConnector
from deskbridge.outbound.udesk.sign import sign
from deskbridge.outbound.udesk.spec import SPEC
from deskbridge.outbound.udesk.state import MemoryUdeskState, UdeskState

__all__ = ["SPEC", "MemoryUdeskState", "Polled", "UdeskConnector", "UdeskState", "sign"]
