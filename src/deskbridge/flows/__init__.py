"""The only code that combines store, channels and desks: taking events in, filing a
message in the desk, sending a reply, applying statuses, automated replies, privacy and
enrichment. ``gateway/`` (HTTP), the listeners and ``pipeline/`` (arq) call these."""

from deskbridge.flows.runtime import Retention, Runtime

__all__ = ["Retention", "Runtime"]
