"""The admin API's document is built from the routes' own models and cannot drift."""

from __future__ import annotations

from deskbridge.gateway.admin.models import FilterBody, ReplayBody
from deskbridge.gateway.admin.openapi import OPERATIONS, document
from deskbridge.gateway.admin.routes import ROUTES


def test_every_served_route_is_documented_with_its_scope() -> None:
    documented = {(op.method, op.path, op.scope) for op in OPERATIONS if op.scope}
    assert documented == {(method, path, scope) for method, path, scope, _ in ROUTES}


def test_bodies_and_answers_are_the_models_json_schemas() -> None:
    schemas = document()["components"]["schemas"]
    replay = ReplayBody.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["ReplayBody"] == {k: v for k, v in replay.items() if k != "$defs"}
    state = schemas["FilterBody"]["properties"]["state"]["anyOf"][0]
    assert (
        state["enum"] == FilterBody.model_json_schema()["properties"]["state"]["anyOf"][0]["enum"]
    )
    assert {"DeliveryPage", "DeliveryDetail", "Lookup", "RawPage", "AuditPage"} <= set(schemas)


def test_query_parameters_come_from_the_query_models() -> None:
    op = document()["paths"]["/admin/v1/deliveries"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert params["since"] == {"type": "string", "format": "date-time"}
    assert "telegram" in params["channel"]["enum"] and "zendesk" in params["desk"]["enum"]
