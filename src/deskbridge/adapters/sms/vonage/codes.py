"""What Vonage's Messages API error codes mean, in words an agent can act on.

From developer.vonage.com/en/api-errors/messages (the ``x-errors`` of the Messages API
OpenAPI document): a status webhook's ``error.title`` and a refused send's ``type``
fragment (``.../api-errors/messages#1120``) carry these codes.
"""

from __future__ import annotations

__all__ = ["OPTED_OUT", "describe"]

OPTED_OUT = "1240"
"""Illegal Number: the customer has texted STOP to this sender."""

_REASONS = {
    "1000": "throttled: sent faster than the account allows",
    "1020": "invalid parameters",
    "1040": "Vonage could not process the number",
    "1050": "the number is barred",
    "1070": "the account's credit or quota is exhausted",
    "1120": "the sender is not accepted in that country",
    "1160": "the number is not on the account's allowed destinations",
    "1170": "not a valid recipient number",
    "1180": "the phone is unreachable for now",
    "1190": "the number is no longer in service",
    "1210": "blocked by the carrier's spam filter",
    "1220": "the phone was busy",
    "1230": "a temporary network failure",
    OPTED_OUT: "the customer opted out (STOP)",
    "1250": "no route to that number",
    "1260": "the number is unreachable",
    "1280": "blocked by the customer's carrier",
    "1360": "expired before it could be delivered",
    "1420": "the sender is not valid for SMS",
    "1430": "not a valid recipient number",
    "1460": "the daily message limit (10DLC) is reached",
}


def describe(code: str | None) -> str:
    """A short reason for ``code``; "see Vonage's error list" for one we do not name."""
    return _REASONS.get(code or "", "see developer.vonage.com/en/api-errors/messages")
