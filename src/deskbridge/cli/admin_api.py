"""What the admin API's commands share (``deskbridge token``, ``deliveries``, ``events`` and
``contacts``, one module each): the HTTP client, exit codes, time parsing and output.

Exit codes: 0 done; 1 a replayed delivery failed again (or did not finish within
``--wait``), or a re-ingested request had an error; 2 bad usage; 3 the gateway refused
the request or could not be reached.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click
import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from deskbridge.config import Settings
from deskbridge.schemas import Channel, Desk

__all__ = [
    "CHANNEL_NAMES",
    "DESK_NAMES",
    "DURATION",
    "EXIT_API",
    "EXIT_FAILED_AGAIN",
    "EXIT_USAGE",
    "WHEN",
    "Api",
    "api_for",
    "api_options",
    "chunks",
    "default_url",
    "die",
    "err",
    "json_out",
    "out",
    "parse_duration",
    "parse_when",
    "print_table",
    "progress_bar",
    "short_time",
]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED_AGAIN = 1
EXIT_USAGE = 2
EXIT_API = 3

# the enums, not the registries (equal, tests/test_registry.py): importing every adapter
# and desk would cost each admin command a second
CHANNEL_NAMES = [c.value for c in Channel]
DESK_NAMES = [d.value for d in Desk]
_BATCH = 100


def die(message: str, code: int = EXIT_API) -> NoReturn:
    """Print ``message`` as the command's one error line and exit with ``code``."""
    # the message is text (an API's words may hold brackets), never markup
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(code)


# --- durations and times -----------------------------------------------------------------

_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``. Raises ValueError."""
    text = text.strip().lower()
    if not text or _PART.sub("", text) != "":
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h or 7d")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _PART.findall(text)))


def parse_when(text: str, now: datetime | None = None) -> str:
    """A time for the API (RFC 3339, UTC): a duration ago (``2h``) or an ISO time
    (``2024-05-01`` or ``2024-05-01T10:00:00+02:00``; no offset means UTC)."""
    now = now or datetime.now(UTC)
    try:
        return (now - parse_duration(text)).isoformat()
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (2h) nor a time (2024-05-01T10:00Z)"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


class _When(click.ParamType[str]):
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Duration(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = _When()
DURATION = _Duration()


# --- the API client ----------------------------------------------------------------------


class Api:
    """The admin API over HTTP. Every failure ends the command with one clear line."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._client.request(method, "/admin/v1" + path, params=clean, json=body)
        except httpx.TimeoutException:
            die(f"the gateway at {self.url} did not answer in time")
        except httpx.TransportError as exc:
            die(f"cannot reach the gateway at {self.url} ({type(exc).__name__}); is it running?")
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if resp.status_code < 300:
            return data
        message = str(data.get("message") or resp.reason_phrase)
        if resp.status_code == 401:
            die(
                f"the gateway refused the token (401: {message}); set DESKBRIDGE_TOKEN to "
                "a fresh one from `deskbridge token create`"
            )
        if resp.status_code == 403:
            die(f"not allowed (403: {message})")
        if resp.status_code == 404 and data.get("error") == "not_found":
            die(message)
        if resp.status_code == 404:
            die(f"{self.url} has no admin API (404); is --url a deskbridge gateway?")
        die(f"{message} (HTTP {resp.status_code})")

    def close(self) -> None:
        self._client.close()


def default_url() -> str:
    """The gateway on this machine, from $DESKBRIDGE_HOST and $DESKBRIDGE_PORT."""
    try:
        s = Settings()
    except Exception:  # pydantic's ValidationError: bad environment values
        return "http://127.0.0.1:8080"
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host  # noqa: S104
    return f"http://{host}:{s.port}"


# every scope the admin API knows; a demo token minted for one command carries them all
DEMO_SCOPES = [
    "deliveries:read",
    "deliveries:write",
    "contacts:read",
    "contacts:write",
    "audit:read",
    "tokens:write",
    "ops:read",  # GET /admin/v1/health: readiness with per-account details
    "messages:write",  # POST /admin/v1/messages: proactive messages
]


def _demo_token(url: str) -> str | None:
    """A five-minute token for the demo at ``url``, signed with the demo's admin secret
    (found the way ``token create`` finds it, in the data directory the demo names);
    None outside the demo."""
    from deskbridge.cli.demo import demo_data_dir
    from deskbridge.errors import ConfigError
    from deskbridge.gateway.admin.auth import demo_admin_secret, mint

    try:
        settings = Settings()
    except Exception:  # pydantic's ValidationError: bad environment values
        return None
    if settings.admin_jwt_secret is not None or settings.config is not None:
        return None
    try:
        secret = demo_admin_secret(demo_data_dir(url, settings))
    except ConfigError:
        return None
    if secret is None:
        return None
    return mint(
        secret,
        algorithm="HS256",
        subject=f"{getpass.getuser()} (demo)",
        scopes=DEMO_SCOPES,
        ttl_seconds=300,
        audience=settings.admin_jwt_audience,
    )


def api_for(url: str | None) -> Api:
    """The admin API at ``url`` (default: ``default_url()``) with $DESKBRIDGE_TOKEN (for
    the demo, a token minted from its secrets), closed with the command; exits with
    ``EXIT_USAGE`` without a token."""
    url = url or default_url()
    token = os.environ.get("DESKBRIDGE_TOKEN", "").strip() or _demo_token(url)
    if not token:
        die(
            "set DESKBRIDGE_TOKEN to an admin token: "
            'export DESKBRIDGE_TOKEN="$(deskbridge token create --scope deliveries:read)"',
            EXIT_USAGE,
        )
    api = Api(url, token)
    click.get_current_context().call_on_close(api.close)
    return api


def api_options(f: F) -> F:
    """Adds ``--url`` (the gateway) to a command."""
    f = click.option(
        "--url",
        envvar="DESKBRIDGE_URL",
        default=None,
        help="The gateway (default $DESKBRIDGE_URL, else http://$DESKBRIDGE_HOST:$DESKBRIDGE_PORT).",
    )(f)
    return f


def print_table(table: Table) -> None:
    """Print ``table`` on stdout, whole lines when piped."""
    # piped (grep, less): whole lines rather than the 80 columns of no terminal
    (out if out.is_terminal else Console(highlight=False, width=220)).print(table)


def json_out(data: Any) -> None:
    """Print ``data`` as indented JSON with sorted keys."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def short_time(value: str | None) -> str:
    """An RFC 3339 time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC); empty for none."""
    if not value:
        return ""
    at = datetime.fromisoformat(value).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def chunks(items: list[str], size: int = _BATCH) -> Iterator[list[str]]:
    """``items`` in batches of ``size`` (the API's batch limit by default)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def progress_bar() -> Progress:
    """A transient progress bar on stderr."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )
