"""The admin API's OpenAPI 3.1 document, served at ``/admin/v1/openapi.json``.

Kept by hand next to the routes; ``tests/test_admin_api.py`` fails when a route and the
document disagree on methods and paths.
"""

from __future__ import annotations

from typing import Any

from deskbridge import __version__

__all__ = ["document"]

_STATES = ["pending", "held", "delivered", "skipped", "dead", "failed", "discarded"]
_CHANNELS = ["telegram", "whatsapp", "messenger", "line", "email", "sip"]
_DESKS = ["sandbox", "zendesk", "intercom", "udesk"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}

_PAGE = [
    _q("limit", "Page size (1-500, default 50).", {"type": "integer", "minimum": 1}),
    _q("cursor", "The next_cursor of the previous page."),
]

_FILTER_PARAMS = [
    _q("account", "One account (default: all)."),
    _q("state", "failed is dead.", {"type": "string", "enum": _STATES}),
    _q("direction", "", {"type": "string", "enum": ["inbound", "outbound"]}),
    _q("channel", "", {"type": "string", "enum": _CHANNELS}),
    _q("desk", "", {"type": "string", "enum": _DESKS}),
    _q("conversation", "A conversation id."),
    _q("error", "Case-insensitive text in the last error or the dead letter's reason."),
    _q("since", "Created at or after (RFC 3339).", {"type": "string", "format": "date-time"}),
    _q("until", "Created before (RFC 3339).", {"type": "string", "format": "date-time"}),
    _q(
        "kind",
        "note: internal notes deskbridge writes for agents; event: everything else.",
        {"type": "string", "enum": ["note", "event"]},
    ),
]


def _op(
    summary: str,
    scope: str | None,
    ok: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": ok, **(_ERRORS if scope else {}), **(extra or {})},
    }
    if scope:
        op["security"] = [{"bearer": [scope]}]
        op["description"] = f"Scope: `{scope}`."
    else:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _schemas() -> dict[str, Any]:
    s: dict[str, Any] = {}
    s["ContactLink"] = {
        "type": "object",
        "required": ["a", "b", "reason"],
        "additionalProperties": False,
        "properties": {
            "account": {"type": "string"},
            "a": {"type": "string", "description": "+E.164, email or channel:id"},
            "b": {"type": "string"},
            "reason": {"type": "string", "maxLength": 500},
            "merge_desk_users": {"type": "boolean"},
        },
    }
    s["ContactDecision"] = {
        "type": "object",
        "required": ["contacts", "accept"],
        "additionalProperties": False,
        "properties": {
            "account": {"type": "string"},
            "contacts": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 2,
                "maxItems": 2,
            },
            "accept": {"type": "boolean"},
            "merge_desk_users": {"type": "boolean"},
        },
    }
    s["ContactForget"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "account": {"type": "string"},
            "desk": {
                "type": "boolean",
                "description": "Also delete the desk user and tickets (default false).",
            },
        },
    }
    s["Error"] = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "bad_request",
                    "unauthorized",
                    "forbidden",
                    "not_found",
                    "admin_disabled",
                    "unavailable",
                    "busy",
                    "desk_failed",
                ],
            },
            "message": {"type": "string"},
        },
    }
    s["Attempt"] = {
        "type": "object",
        "required": ["at", "outcome"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "outcome": {
                "type": "string",
                "enum": [
                    "delivered",
                    "skipped",
                    "held",
                    "retry",
                    "rate_limited",
                    "permanent",
                    "exhausted",
                ],
            },
            "error": {"type": "string"},
            "http_status": {"type": "integer"},
            "wait": {"type": "number", "description": "Seconds until the next attempt."},
        },
    }
    s["Delivery"] = {
        "type": "object",
        "description": "Optional fields are left out when empty.",
        "required": [
            "id",
            "account",
            "direction",
            "channel",
            "desk",
            "conversation_id",
            "event_id",
            "state",
            "attempts",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "account": {"type": "string"},
            "direction": {"type": "string", "enum": ["inbound", "outbound"]},
            "channel": {"type": "string"},
            "desk": {"type": "string"},
            "conversation_id": {"type": "string"},
            "event_id": {"type": "string"},
            "state": {"type": "string", "enum": [x for x in _STATES if x != "failed"]},
            "attempts": {"type": "integer", "description": "Attempts that spent the budget."},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "last_error": {"type": "string"},
            "last_status": {"type": "integer"},
            "reason": {"type": "string", "description": "permanent, exhausted, parse_failed"},
            "channel_status": {"type": "string"},
            "channel_error": {"type": "string"},
            "raw_id": {"type": "string"},
            "replays": {"type": "integer"},
            "replayed_at": {"type": "string", "format": "date-time"},
            "replayed_by": {"type": "string"},
            "discarded_at": {"type": "string", "format": "date-time"},
            "discarded_by": {"type": "string"},
            "discard_reason": {"type": "string"},
            "kind": {
                "type": "string",
                "description": "note: an internal note for the agent (left out otherwise)",
            },
            "last_attempt": _ref("Attempt"),
        },
    }
    s["DeliveryDetail"] = {
        "allOf": [
            _ref("Delivery"),
            {
                "type": "object",
                "properties": {"attempt_log": {"type": "array", "items": _ref("Attempt")}},
            },
        ]
    }
    s["DeliveryPage"] = {
        "type": "object",
        "required": ["deliveries", "next_cursor"],
        "properties": {
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    s["Filter"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            p["name"]: {**p["schema"], "description": p["description"]} for p in _FILTER_PARAMS
        },
    }
    ids = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1000}
    s["Ids"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids"],
        "properties": {"ids": ids, "account": {"type": "string"}},
    }
    s["Lookup"] = {
        "type": "object",
        "required": ["deliveries", "missing"],
        "properties": {
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "missing": {"type": "array", "items": {"type": "string"}},
        },
    }
    skipped = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "reason": {"type": "string"}},
        },
    }
    s["Replay"] = {
        "type": "object",
        "additionalProperties": False,
        "description": "ids, or a filter (its state defaults to dead; at most 10,000 matches).",
        "properties": {
            "ids": ids,
            "account": {"type": "string", "description": "With ids: where to look."},
            "filter": _ref("Filter"),
            "dry_run": {"type": "boolean"},
        },
    }
    s["ReplayResult"] = {
        "type": "object",
        "properties": {
            "dry_run": {"type": "boolean"},
            "matched": {"type": "integer"},
            "replayed": {"type": "array", "items": {"type": "string"}},
            "skipped": skipped,
            "missing": {"type": "array", "items": {"type": "string"}},
            "truncated": {"type": "boolean"},
        },
    }
    s["Discard"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids", "reason"],
        "properties": {
            "ids": ids,
            "reason": {"type": "string", "minLength": 1, "maxLength": 500},
            "account": {"type": "string"},
        },
    }
    s["DiscardResult"] = {
        "type": "object",
        "properties": {
            "discarded": {"type": "array", "items": {"type": "string"}},
            "skipped": skipped,
            "missing": {"type": "array", "items": {"type": "string"}},
        },
    }
    s["RawEvent"] = {
        "type": "object",
        "description": "A kept raw request (never its body).",
        "properties": {
            "id": {"type": "string"},
            "account": {"type": "string"},
            "source": {"type": "string", "description": "The channel (or desk) it came from."},
            "received_at": {"type": "string", "format": "date-time"},
            "method": {"type": "string"},
            "path": {"type": "string"},
            "size": {"type": "integer"},
            "parse_failed": {"type": "boolean"},
            "delivery_id": {"type": "string", "description": "Its parse_failed dead letter."},
        },
    }
    s["RawPage"] = {
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": _ref("RawEvent")},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    s["Reingest"] = {
        "type": "object",
        "additionalProperties": False,
        "description": "ids, or a time range (since, optional until) with paging.",
        "properties": {
            "account": {"type": "string"},
            "channel": {"type": "string", "enum": _CHANNELS + _DESKS},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "ids": {**ids},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            "cursor": {"type": "string"},
            "dry_run": {"type": "boolean", "default": False},
            "allow_duplicates": {
                "type": "boolean",
                "default": False,
                "description": "Also take requests older than the dedup window.",
            },
        },
    }
    s["ReingestResult"] = {
        "type": "object",
        "properties": {
            "dry_run": {"type": "boolean"},
            "totals": {
                "type": "object",
                "properties": {
                    k: {"type": "integer"} for k in ("raw", "new", "duplicate", "ignored", "errors")
                },
            },
            "raw": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "account": {"type": "string"},
                        "source": {"type": "string"},
                        "parse_failed": {"type": "boolean"},
                        "new": {"type": "integer"},
                        "duplicate": {"type": "integer"},
                        "ignored": {"type": "integer"},
                        "error": {"type": "string"},
                        "events": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "kind": {"type": "string"},
                                    "conversation_id": {"type": "string"},
                                    "status": {
                                        "type": "string",
                                        "enum": ["new", "duplicate", "ignored"],
                                    },
                                    "delivery_id": {"type": "string"},
                                    "state": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    s["AuditPage"] = {
        "type": "object",
        "properties": {
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                        "who": {"type": "string", "description": "The token's sub."},
                        "action": {
                            "type": "string",
                            "enum": [
                                "deliveries.replay",
                                "deliveries.discard",
                                "events.reingest",
                                "contacts.link",
                                "contacts.unlink",
                                "contacts.accept",
                                "contacts.reject",
                                "contacts.forget",
                                "contacts.export",
                            ],
                        },
                        "count": {"type": "integer"},
                        "details": {"type": "object"},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    return s


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every ``/admin/v1`` route."""
    p = "/admin/v1"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deskbridge admin API",
            "version": __version__,
            "description": "Deliveries, raw requests, contacts, the audit log. See docs/admin.md.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            f"{p}/openapi.json": {
                "get": _op("This document.", None, _json({"type": "object"}, "OpenAPI 3.1"))
            },
            f"{p}/deliveries": {
                "get": _op(
                    "List deliveries, newest first.",
                    "deliveries:read",
                    _json(_ref("DeliveryPage"), "A page."),
                    params=_FILTER_PARAMS + _PAGE,
                )
            },
            f"{p}/deliveries/{{id}}": {
                "get": _op(
                    "One delivery with every attempt.",
                    "deliveries:read",
                    _json(_ref("DeliveryDetail"), "The delivery."),
                    params=[
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        _q("account", "Where to look (default: every account)."),
                    ],
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/deliveries/lookup": {
                "post": _op(
                    "Many deliveries by id, each with its last attempt.",
                    "deliveries:read",
                    _json(_ref("Lookup"), "Found and missing."),
                    body="Ids",
                )
            },
            f"{p}/deliveries/replay": {
                "post": _op(
                    "Replay dead letters (idempotent: others are skipped with their state).",
                    "deliveries:write",
                    _json(_ref("ReplayResult"), "What was (or would be) replayed."),
                    body="Replay",
                )
            },
            f"{p}/deliveries/discard": {
                "post": _op(
                    "Discard dead, held or pending deliveries (kept with who and why).",
                    "deliveries:write",
                    _json(_ref("DiscardResult"), "What was discarded."),
                    body="Discard",
                )
            },
            f"{p}/events": {
                "get": _op(
                    "List kept raw requests, newest first.",
                    "deliveries:read",
                    _json(_ref("RawPage"), "A page."),
                    params=[
                        _q("account", "One account (default: all)."),
                        _q("channel", "A channel or desk.", {"type": "string"}),
                        _q("since", "Received at or after.", {"type": "string"}),
                        _q("until", "Received before.", {"type": "string"}),
                        *_PAGE,
                    ],
                )
            },
            f"{p}/events/reingest": {
                "post": _op(
                    "Parse kept raw requests again and take their new events in.",
                    "deliveries:write",
                    _json(_ref("ReingestResult"), "Per request, what was (or would be) taken."),
                    body="Reingest",
                )
            },
            f"{p}/contacts/{{ref}}": {
                "get": _op(
                    "One contact: identities, edges with evidence, conversations, desk users.",
                    "contacts:read",
                    _json({"type": "object"}, "The contact."),
                    params=[
                        {
                            "name": "ref",
                            "in": "path",
                            "required": True,
                            "description": "A contact id, +E.164 number, email or channel:id.",
                            "schema": {"type": "string"},
                        },
                        _q("account", "The account (required when there are several)."),
                    ],
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/contacts/{{ref}}/forget": {
                "post": _op(
                    "Erase a contact and everything kept about them (docs/privacy.md); "
                    "idempotent, audited with ids and counts only.",
                    "contacts:write",
                    _json({"type": "object"}, "What each step removed."),
                    params=[
                        {
                            "name": "ref",
                            "in": "path",
                            "required": True,
                            "description": "A contact id, +E.164 number, email or channel:id.",
                            "schema": {"type": "string"},
                        },
                    ],
                    body="ContactForget",
                    extra={
                        "409": {"description": "A delivery is in flight; try again."},
                        "502": {"description": "The desk erasure failed; nothing erased."},
                    },
                )
            },
            f"{p}/contacts/{{ref}}/export": {
                "get": _op(
                    "Everything deskbridge holds about a contact, as one JSON document.",
                    "contacts:read",
                    _json({"type": "object"}, "The export."),
                    params=[
                        {
                            "name": "ref",
                            "in": "path",
                            "required": True,
                            "description": "A contact id, +E.164 number, email or channel:id.",
                            "schema": {"type": "string"},
                        },
                        _q("account", "The account (required when there are several)."),
                    ],
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/contacts/link": {
                "post": _op(
                    "Link two identifiers (an operator's strong link: their contacts merge).",
                    "contacts:write",
                    _json({"type": "object"}, "The surviving contact."),
                    body="ContactLink",
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/contacts/unlink": {
                "post": _op(
                    "Remove the link between two identifiers; the contact splits when "
                    "nothing else joins them.",
                    "contacts:write",
                    _json({"type": "object"}, "The kept contact and the split-off one."),
                    body="ContactLink",
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/contacts/suggestions": {
                "get": _op(
                    "Merge suggestions awaiting a decision (weak, shared or recycled).",
                    "contacts:read",
                    _json({"type": "object"}, "The pending suggestions."),
                    params=[_q("account", "The account (required when there are several).")],
                )
            },
            f"{p}/contacts/suggestions/decide": {
                "post": _op(
                    "Accept (merge) or reject a suggestion.",
                    "contacts:write",
                    _json({"type": "object"}, "Done."),
                    body="ContactDecision",
                    extra={"404": {"$ref": "#/components/responses/NotFound"}},
                )
            },
            f"{p}/audit": {
                "get": _op(
                    "The audit log of admin writes, newest first.",
                    "audit:read",
                    _json(_ref("AuditPage"), "A page."),
                    params=_PAGE,
                )
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256, RS256 or ES256 as configured; exp, sub and aud "
                    "required; scopes in the space-separated scope claim.",
                }
            },
            "schemas": _schemas(),
            "responses": {
                name: _json(_ref("Error"), text)
                for name, text in (
                    ("BadRequest", "Bad input; nothing was changed."),
                    ("Unauthorized", "Missing, malformed, expired or wrongly signed token."),
                    ("Forbidden", "The token lacks the route's scope."),
                    ("NotFound", "No such delivery."),
                    ("Unavailable", "No admin key configured, or the store is down."),
                )
            },
        },
    }
