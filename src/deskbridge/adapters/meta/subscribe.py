"""``deskbridge channels register`` for the Meta channels (WhatsApp, Messenger,
Instagram): a Meta app has one callback URL per product for every account it serves, and
each account (a Page, an Instagram account, a WhatsApp Business Account) subscribes to the
app's webhooks. Both steps read what is set first and change nothing that already is.

- The app's webhook: ``GET``/``POST /<app-id>/subscriptions`` with the app access token
  ``<app-id>|<app-secret>`` and ``object``, ``callback_url``, ``verify_token``, ``fields``
  (a POST adds fields, it removes none; Meta verifies the URL with a GET first). Meta's
  reference says the edge does not set Instagram or WhatsApp webhooks ("must be
  configured using the App Dashboard"): for those the subscription is only read, to say
  whether the dashboard already points at us.
- An account's subscription: ``GET``/``POST /<id>/subscribed_apps`` with the account's
  token (``subscribed_fields`` for a Page or an Instagram account; a WABA takes none).

Docs: graph-api/reference/app/subscriptions, graph-api/webhooks/subscriptions-edge,
graph-api/reference/page/subscribed_apps, messenger-platform/instagram/features/webhook
("configuration via the App Subscriptions edge is not supported"; step 2, the Page's
subscription), instagram-platform/webhooks (step 3, ``/<IG_ID>/subscribed_apps`` on
graph.instagram.com), whatsapp solution-providers/manage-webhooks (``/<WABA_ID>/
subscribed_apps``), facebook-login/guides/access-tokens (app access tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from deskbridge.adapters.capabilities import Registered
from deskbridge.adapters.meta.graph import graph_error
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.errors import DeliveryError, PermanentError, RetryableError
from deskbridge.http import parse_retry_after, transport_error

__all__ = ["AppWebhook", "Registrar", "Subscription"]

# Graph's throttles (application, user, Page, API-specific) and its temporary errors
_THROTTLED = frozenset({4, 17, 32, 613})
_TEMPORARY = frozenset({1, 2})
_INVALID_TOKEN = 190
_CALLBACK_UNVERIFIED = 2200  # [S] integrators' reports: "(#2200) Callback verification failed"
_OBJECT = TypeAdapter(dict[str, Any])


@dataclass(frozen=True, slots=True)
class AppWebhook:
    """What a product needs of its app's webhook."""

    object: str
    """``page``, ``instagram``, ``whatsapp_business_account``."""
    fields: tuple[str, ...]
    by_api: bool
    """Whether ``/<app-id>/subscriptions`` sets it (Meta: only the Page object here)."""
    brand: str


@dataclass(frozen=True, slots=True)
class Subscription:
    """An account's subscription to the app: ``<graph>/<id>/subscribed_apps``."""

    url: str
    token: SecretStr
    fields: tuple[str, ...]
    """``subscribed_fields``; empty for an edge that takes none (a WABA)."""
    owner: str
    """What the messages call the account: ``Page``, ``Instagram account``."""


class Registrar:
    """The Graph calls of one channel's registration, on the process's ``client``. Tokens
    go in the ``Authorization`` header, never the URL; errors carry a one-line reason,
    never a token or a response body."""

    def __init__(self, client: httpx.AsyncClient, app_graph: str, hook: AppWebhook) -> None:
        self._client = client
        self._app_graph = app_graph.rstrip("/")
        self._hook = hook

    async def app_webhook(self, name: str, app: MetaAppConfig, url: str) -> Registered:
        """Point the app's webhook for this product at ``url`` with the app's verify token,
        unless it already posts every field here; for a product the API does not set, say
        what to set in the dashboard. Raises ``DeliveryError``."""
        hook = self._hook
        app_id = _app_id(name, app)
        token = SecretStr(f"{app_id}|{app.app_secret.get_secret_value()}")
        endpoint = f"{self._app_graph}/{app_id}/subscriptions"
        what = f"the app's {hook.brand} webhook"
        body = await self._call("GET", endpoint, token, what=f"reading {what}")
        current = _subscription(body, hook.object)
        fields = ", ".join(hook.fields)
        if current is not None and _points_at(current, url, hook.fields):
            return Registered(f"{what} already posts {fields} to {url}")
        if not hook.by_api:
            return Registered(
                f"set {what} to {url} (verify token of apps.{name}; fields {fields}) in the"
                f" Meta app dashboard: Meta's API does not set {hook.brand} webhooks",
                manual=True,
            )
        form = {
            "object": hook.object,
            "callback_url": url,
            "verify_token": app.verify_token.get_secret_value(),
            "fields": ",".join(hook.fields),
        }
        _confirmed(await self._call("POST", endpoint, token, what=f"setting {what}", form=form))
        return Registered(f"{what} set to {url} ({fields})")

    async def subscribe(self, name: str, app: MetaAppConfig, sub: Subscription) -> Registered:
        """Subscribe the account to the app with ``sub.fields`` (kept with any fields it
        already has), unless it already is. Raises ``DeliveryError``."""
        app_id = _app_id(name, app)
        what = f"the {sub.owner}'s subscription to the app"
        body = await self._call("GET", sub.url, sub.token, what=f"reading {what}")
        ours = next((e for e in _data(body) if _subscriber(e) == app_id), None)
        have = _names(ours.get("subscribed_fields")) if ours is not None else set()
        shown = f" ({', '.join(sub.fields)})" if sub.fields else ""
        if ours is not None and have.issuperset(sub.fields):
            return Registered(f"the {sub.owner} is already subscribed to the app{shown}")
        form = {"subscribed_fields": ",".join(sorted(have.union(sub.fields)))} if sub.fields else {}
        _confirmed(await self._call("POST", sub.url, sub.token, what=f"setting {what}", form=form))
        return Registered(f"the {sub.owner} subscribed to the app{shown}")

    async def _call(
        self,
        method: str,
        url: str,
        token: SecretStr,
        *,
        what: str,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        try:
            response = await self._client.request(method, url, headers=headers, data=form)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if not response.is_success:
            raise refusal(response, what=what)
        try:
            return _OBJECT.validate_json(response.content)
        except ValidationError:
            raise PermanentError(f"{what}: not a Graph API answer") from None


def refusal(response: httpx.Response, *, what: str) -> DeliveryError:
    """A one-line reason for a Graph refusal: the code and what to do about it, Meta's
    (scrubbed) title where it names what is missing."""
    status = response.status_code
    err = graph_error(response)
    code = err.code if err is not None else None
    title = f": {err.title}" if err is not None and err.title else ""
    label = f"Graph error {code}" if code is not None else f"HTTP {status}"
    if code in _THROTTLED or status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return RetryableError(
            f"{what}: Meta's rate limit ({label}); run it again later",
            status=status,
            retry_after=wait,
        )
    if code in _TEMPORARY or status >= 500:
        return RetryableError(
            f"{what}: Meta is unavailable ({label}); run it again later",
            status=status,
            outcome="unknown",
        )
    if code == _INVALID_TOKEN:
        return PermanentError(
            f"{what}: the token is invalid or has expired ({label})", status=status
        )
    if code == 10 or (code is not None and 200 <= code < 300):
        return PermanentError(
            f"{what}: the token lacks a permission this needs ({label}{title})", status=status
        )
    if code == _CALLBACK_UNVERIFIED:
        return PermanentError(
            f"{what}: Meta could not verify the callback URL ({label}): the gateway must be"
            " reachable there and know the app's verify token",
            status=status,
        )
    return PermanentError(f"{what}: {label}{title}", status=status)


def _app_id(name: str, app: MetaAppConfig) -> str:
    if app.app_id is None:
        raise PermanentError(
            f"apps.{name} has no app_id (App settings → Basic): register needs it to read"
            " and set the app's webhook subscriptions"
        )
    return app.app_id


def _data(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _names(value: Any) -> set[str]:
    """Field names as the edges list them: strings, or ``{"name": ...}`` objects."""
    items = value if isinstance(value, list) else []
    names = {i.get("name") if isinstance(i, dict) else i for i in items}
    return {n for n in names if isinstance(n, str)}


def _subscription(body: Mapping[str, Any], obj: str) -> dict[str, Any] | None:
    return next((e for e in _data(body) if e.get("object") == obj), None)


def _points_at(current: Mapping[str, Any], url: str, fields: tuple[str, ...]) -> bool:
    return (
        current.get("callback_url") == url
        and current.get("active", True) is True
        and _names(current.get("fields")).issuperset(fields)
    )


def _subscriber(entry: Mapping[str, Any]) -> str | None:
    """The app id of a ``subscribed_apps`` entry: its ``id`` (a Page's, an Instagram
    account's) or ``whatsapp_business_api_data.id`` (a WABA's)."""
    waba = entry.get("whatsapp_business_api_data")
    value = waba.get("id") if isinstance(waba, dict) else entry.get("id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _confirmed(body: Mapping[str, Any]) -> None:
    # the edges answer {"success": true}; one of Meta's guides shows the string "true"
    if body.get("success") not in (True, "true"):
        raise PermanentError("Meta did not confirm the subscription (no success in its answer)")
