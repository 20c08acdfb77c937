"""What the Meta channels share: one Meta app's webhook signature and verification
handshake, and the Graph API's error bodies (WhatsApp, Messenger, Instagram); the
Messenger Platform's webhook body (``inbound``) and the events built from it (``events``),
which Messenger and Instagram read alike.

Docs: https://developers.facebook.com/docs/graph-api/webhooks/getting-started and
https://developers.facebook.com/docs/graph-api/guides/error-handling
"""

from deskbridge.adapters.meta.graph import GraphError, graph_error, raise_for_graph, scrub
from deskbridge.adapters.meta.webhook import SIGNATURE_HEADER, handshake, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "GraphError",
    "graph_error",
    "handshake",
    "raise_for_graph",
    "scrub",
    "sign",
    "verify",
]
