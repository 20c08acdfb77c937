"""The admin API's OpenAPI 3.1 document, served at ``/admin/v1/openapi.json``.

Built from the pydantic models the routes parse and answer with (``models.py``) and one
table of operations; ``tests/test_admin_api.py`` fails when that table and the served
routes disagree on methods, paths or scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from deskbridge import __version__
from deskbridge.gateway.admin.models import (
    AccountQuery,
    AuditPage,
    ContactAccountQuery,
    DecideBody,
    DeliveryDetail,
    DeliveryPage,
    DeliveryQuery,
    DiscardBody,
    DiscardResult,
    Error,
    EventsQuery,
    ForgetBody,
    ForgetResult,
    HealthDetail,
    IdsBody,
    IgnoredPage,
    IgnoredQuery,
    LinkBody,
    Lookup,
    MessageBody,
    MessageQueued,
    OptOutBody,
    PageQuery,
    RawEventDetail,
    RawPage,
    ReingestBody,
    ReingestResult,
    ReplayBody,
    ReplayResult,
    RevokeBody,
    RevokeResult,
)

__all__ = ["OPERATIONS", "Operation", "document"]

_REF = "#/components/schemas/{model}"
_CONTACT_REF = "A contact id, +E.164 number, email or channel:id."
_NOT_FOUND = {"404": {"$ref": "#/components/responses/NotFound"}}


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin route as documented: ``answer`` None is a free-form JSON object;
    ``path_param`` names the path's one parameter and describes it."""

    method: str
    path: str
    scope: str | None
    summary: str
    answer: type[BaseModel] | None
    answer_text: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    path_param: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


OPERATIONS = [
    Operation("GET", "/openapi.json", None, "This document.", None, "OpenAPI 3.1"),
    Operation(
        "GET",
        "/deliveries",
        "deliveries:read",
        "List deliveries, newest first.",
        DeliveryPage,
        "A page.",
        query=DeliveryQuery,
    ),
    Operation(
        "GET",
        "/deliveries/{id}",
        "deliveries:read",
        "One delivery with every attempt.",
        DeliveryDetail,
        "The delivery.",
        query=AccountQuery,
        path_param=("id", ""),
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/deliveries/lookup",
        "deliveries:read",
        "Many deliveries by id, each with its last attempt.",
        Lookup,
        "Found and missing.",
        body=IdsBody,
    ),
    Operation(
        "POST",
        "/deliveries/replay",
        "deliveries:write",
        "Replay dead letters (idempotent: others are skipped with their state).",
        ReplayResult,
        "What was (or would be) replayed.",
        body=ReplayBody,
    ),
    Operation(
        "POST",
        "/deliveries/discard",
        "deliveries:write",
        "Discard dead, held or pending deliveries (kept with who and why).",
        DiscardResult,
        "What was discarded.",
        body=DiscardBody,
    ),
    Operation(
        "GET",
        "/events",
        "deliveries:read",
        "List kept raw requests, newest first.",
        RawPage,
        "A page.",
        query=EventsQuery,
    ),
    Operation(
        "GET",
        "/events/ignored",
        "deliveries:read",
        "List inbound items acknowledged and deliberately not filed, with their reasons.",
        IgnoredPage,
        "A page.",
        query=IgnoredQuery,
    ),
    Operation(
        "GET",
        "/events/{id}",
        "deliveries:read",
        "One kept raw request with its headers, query and body. The body and the header"
        " and query values (they name the sender) are given only when the token also has"
        " contacts:read, and that is audited (events.show); otherwise they are null and"
        " `redacted` says why.",
        RawEventDetail,
        "The raw request.",
        query=AccountQuery,
        path_param=("id", ""),
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/events/reingest",
        "deliveries:write",
        "Parse kept raw requests again and take their new events in.",
        ReingestResult,
        "Per request, what was (or would be) taken.",
        body=ReingestBody,
    ),
    Operation(
        "GET",
        "/contacts/{ref}",
        "contacts:read",
        "One contact: identities, edges with evidence, conversations, desk users.",
        None,
        "The contact.",
        query=ContactAccountQuery,
        path_param=("ref", _CONTACT_REF),
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/contacts/{ref}/forget",
        "contacts:write",
        "Erase a contact and everything kept about them (docs/privacy.md); "
        "idempotent, audited with ids and counts only.",
        ForgetResult,
        "What each step removed; with desk, whether the desk confirmed the deletion.",
        body=ForgetBody,
        path_param=("ref", _CONTACT_REF),
        extra={
            "409": {"description": "A delivery is in flight; try again."},
            "502": {"description": "The desk erasure failed; nothing erased."},
        },
    ),
    Operation(
        "GET",
        "/contacts/{ref}/export",
        "contacts:read",
        "Everything deskbridge holds about a contact, as one JSON document.",
        None,
        "The export.",
        query=ContactAccountQuery,
        path_param=("ref", _CONTACT_REF),
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/contacts/link",
        "contacts:write",
        "Link two identifiers (an operator's strong link: their contacts merge).",
        None,
        "The surviving contact.",
        body=LinkBody,
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/contacts/unlink",
        "contacts:write",
        "Remove the link between two identifiers; the contact splits when nothing else joins them.",
        None,
        "The kept contact and the split-off one.",
        body=LinkBody,
        extra=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/contacts/suggestions",
        "contacts:read",
        "Merge suggestions awaiting a decision (weak, shared or recycled).",
        None,
        "The pending suggestions.",
        query=ContactAccountQuery,
    ),
    Operation(
        "POST",
        "/contacts/suggestions/decide",
        "contacts:write",
        "Accept (merge) or reject a suggestion.",
        None,
        "Done.",
        body=DecideBody,
        extra=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/audit",
        "audit:read",
        "The audit log of admin writes, newest first.",
        AuditPage,
        "A page.",
        query=PageQuery,
    ),
    Operation(
        "POST",
        "/tokens/revoke",
        "tokens:write",
        "Revoke an admin token by its jti, or every token of a subject issued up to now; "
        "checked on every admin request, kept until those tokens expire, audited.",
        RevokeResult,
        "What is refused from now on, and until when.",
        body=RevokeBody,
    ),
    Operation(
        "POST",
        "/contacts/{ref}/opt-out",
        "contacts:write",
        "Record the customer's opt-out of proactive messages and surveys (opt_out false ends it).",
        None,
        "The contact and its opt-out.",
        body=OptOutBody,
        path_param=("ref", _CONTACT_REF),
        extra=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/messages",
        "messages:write",
        "Send the customer a message first, on their channel, within its rules.",
        MessageQueued,
        "The key was used before: the delivery it queued then (nothing new sent).",
        body=MessageBody,
        extra={
            "202": {
                "description": "Queued as an outbound delivery.",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="MessageQueued")}}
                },
            },
            "409": {
                "description": "A channel rule, the customer's opt-out or a reused key refuses it"
                " (``error`` names the rule); nothing was written.",
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
            },
            **_NOT_FOUND,
        },
    ),
    Operation(
        "GET",
        "/health",
        "ops:read",
        "Readiness with its details: each account's desk, channels and problems.",
        HealthDetail,
        "The report (200 whether or not the process is ready).",
    ),
]
"""Every ``/admin/v1`` route, as the document describes it."""

_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters (a query value is never null)."""
    out = []
    for name, prop in model.model_json_schema(ref_template=_REF)["properties"].items():
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        schema = {k: v for k, v in branches[0].items() if k not in ("title", "default")}
        out.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": prop.get("description", ""),
                "schema": schema,
            }
        )
    return out


def _operation(op: Operation) -> dict[str, Any]:
    answer = _ref(op.answer) if op.answer is not None else {"type": "object"}
    out: dict[str, Any] = {
        "summary": op.summary,
        "responses": {
            "200": _json(answer, op.answer_text),
            **(_ERRORS if op.scope else {}),
            **op.extra,
        },
    }
    if op.scope:
        out["security"] = [{"bearer": [op.scope]}]
        out["description"] = f"Scope: `{op.scope}`."
    else:
        out["security"] = []
    params: list[dict[str, Any]] = []
    if op.path_param is not None:
        name, description = op.path_param
        param: dict[str, Any] = {"name": name, "in": "path", "required": True}
        if description:
            param["description"] = description
        params.append({**param, "schema": {"type": "string"}})
    if op.query is not None:
        params += _query(op.query)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    return out


def _schemas() -> dict[str, Any]:
    """Every body and answer model's JSON schema, the models they use included."""
    models: set[type[BaseModel]] = {Error}
    for op in OPERATIONS:
        models |= {m for m in (op.body, op.answer) if m is not None}
    _, top = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    return dict(top["$defs"])


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every ``/admin/v1`` route."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(f"/admin/v1{op.path}", {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deskbridge admin API",
            "version": __version__,
            "description": "Deliveries, raw requests, contacts, the audit log. See docs/admin.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256, RS256 or ES256 as configured; exp, sub and aud "
                    "required; scopes in the space-separated scope claim. Entries "
                    "account:<name> and app:<name> limit the token to those accounts and "
                    "platform apps (none: it sees all).",
                }
            },
            "schemas": _schemas(),
            "responses": {
                name: _json(_ref(Error), text)
                for name, text in (
                    ("BadRequest", "Bad input; nothing was changed."),
                    ("Unauthorized", "Missing, malformed, expired or wrongly signed token."),
                    (
                        "Forbidden",
                        "The token lacks the route's scope (or, for the audit log, is "
                        "limited to accounts).",
                    ),
                    ("NotFound", "No such delivery."),
                    ("Unavailable", "No admin key configured, or the store is down."),
                )
            },
        },
    }
