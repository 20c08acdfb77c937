"""Security probes against a running deskbridge (``make security``; the short form is
``tests/test_security_probes.py``): real ``serve`` and ``worker`` processes on 127.0.0.1
in production mode (an accounts file), through ``tests.faults.harness``.

Each probe answers whether a documented protection holds (docs/security.md): exposure of
health and metrics, slow clients, admin token claims, erasure leftovers. A probe marked
``pending`` depends on work merged separately (branch sec18b: token claims and
revocation, keyed dedup keys): it runs and is reported, but its failure fails nothing
until the lead removes the mark after merging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from deskbridge.adapters.telegram import sample_update
from deskbridge.gateway.admin import mint
from tests.faults.harness import TG_SECRET, Harness, Timing

__all__ = ["ACCOUNT", "PROBES", "Outcome", "SecurityHarness", "run_probes"]

ACCOUNT = "probe-shop"
ADMIN_SECRET = "security-probe-admin-secret-0123456789abcdef"  # loopback only
AUD = "deskbridge-admin"
BOUND = 20.0  # seconds: only a broken gateway makes a probe wait this long
PROXIED = {"X-Forwarded-For": "203.0.113.9"}

# the gateway runs with short limits, so each slow client is cut off within a second or two
SLOW_LIMITS = {
    "DESKBRIDGE_HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "DESKBRIDGE_HTTP_KEEPALIVE_SECONDS": "1",
    "DESKBRIDGE_HTTP_BODY_TIMEOUT_SECONDS": "1",
    "DESKBRIDGE_HTTP_BODY_MIN_BYTES_PER_SECOND": str(1 << 30),
    "DESKBRIDGE_HTTP_MAX_CONNECTIONS_PER_SOURCE": "8",
}


class SecurityHarness(Harness):
    """The fault harness's processes, with an admin key and short slow-client limits."""

    def _env(self, config: Any) -> dict[str, str]:
        env = super()._env(config)
        env.update(SLOW_LIMITS, DESKBRIDGE_ADMIN_JWT_SECRET=ADMIN_SECRET)
        return env

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str
    pending: str | None = None

    @property
    def verdict(self) -> str:
        if self.ok:
            return "ok"
        return f"pending ({self.pending})" if self.pending else "FAIL"


Probe = Callable[[SecurityHarness], Awaitable[str]]


@dataclass(frozen=True)
class Spec:
    name: str
    probe: Probe
    short: bool = True
    pending: str | None = None


class Broken(AssertionError):
    """A protection does not hold (the message says how)."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise Broken(message)


def _token(**claims: Any) -> str:
    return jwt.encode(claims, ADMIN_SECRET, algorithm="HS256")


def _ops(*scopes: str) -> dict[str, str]:
    tok = mint(
        ADMIN_SECRET,
        algorithm="HS256",
        subject="probe",
        scopes=list(scopes) or ["ops:read"],
        ttl_seconds=600,
        audience=AUD,
    )
    return {"Authorization": f"Bearer {tok}"}


# --- exposure ----------------------------------------------------------------------------


async def health_names_no_account(h: SecurityHarness) -> str:
    async with httpx.AsyncClient(timeout=BOUND) as c:
        for base in (h.gateway_url, h.worker_url):
            for path in ("/healthz", "/readyz"):
                text = (await c.get(base + path, headers=PROXIED)).text
                _check(ACCOUNT not in text, f"{base}{path} names the account")
                _check("zendesk" not in text and "telegram" not in text, f"{path}: details")
        detail = await c.get(h.gateway_url + "/admin/v1/health")
        _check(detail.status_code == 401, f"/admin/v1/health without a token: {detail}")
        detail = await c.get(h.gateway_url + "/admin/v1/health", headers=_ops())
        _check(ACCOUNT in detail.text, "/admin/v1/health (ops:read) lacks the details")
    return "/healthz, /readyz: status only; details behind ops:read"


async def metrics_not_public(h: SecurityHarness) -> str:
    async with httpx.AsyncClient(timeout=BOUND) as c:
        for base in (h.gateway_url, h.worker_url):
            resp = await c.get(base + "/metrics", headers=PROXIED)
            _check(resp.status_code == 401, f"{base}/metrics via a proxy: {resp.status_code}")
            _check(ACCOUNT not in resp.text, f"{base}/metrics leaks labels when refused")
            local = await c.get(base + "/metrics")
            _check(local.status_code == 200, f"{base}/metrics from loopback: {local}")
    return "/metrics: 401 to non-loopback callers on gateway and worker"


# --- slow clients -------------------------------------------------------------------------


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    got = b""
    async with asyncio.timeout(BOUND):
        while chunk := await reader.read(65536):
            got += chunk
    return got


async def _answered(h: SecurityHarness) -> None:
    async with httpx.AsyncClient(timeout=BOUND) as c:
        resp = await c.get(h.gateway_url + "/healthz")
        _check(resp.status_code == 200, f"normal traffic not answered: {resp.status_code}")


async def _shut(*writers: asyncio.StreamWriter) -> None:
    for w in writers:
        w.close()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()


async def slow_clients_cut_off(h: SecurityHarness) -> str:
    port = h.gateway_port
    head_r, head_w = await asyncio.open_connection("127.0.0.1", port)
    head_w.write(b"POST /webhooks/telegram/x HTTP/1.1\r\nHost: x\r\n")
    body_r, body_w = await asyncio.open_connection("127.0.0.1", port)
    body_w.write(
        f"POST /webhooks/telegram/{ACCOUNT} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{".encode()
    )
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    idle_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")

    async def trickle() -> None:
        for i in range(400):
            await asyncio.sleep(0.2)
            if head_w.is_closing():
                return
            head_w.write(f"X-Slow-{i}: 1\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await head_w.drain()

    trickling = asyncio.create_task(trickle())
    try:
        await _answered(h)
        _check(await _until_closed(head_r) == b"", "a slowloris head got an answer")
        _check((await _until_closed(body_r)).startswith(b"HTTP/1.1 408"), "slow body: no 408")
        idle = await _until_closed(idle_r)
        _check(idle.startswith(b"HTTP/1.1 200"), "idle keep-alive: no first answer")
        await _answered(h)
    finally:
        trickling.cancel()
        await _shut(head_w, body_w, idle_w)
    return "slowloris head, slow body (408) and idle keep-alive closed; traffic answered"


async def connections_per_source_capped(h: SecurityHarness) -> str:
    held = []
    try:
        for _ in range(int(SLOW_LIMITS["DESKBRIDGE_HTTP_MAX_CONNECTIONS_PER_SOURCE"])):
            held.append(await asyncio.open_connection("127.0.0.1", h.gateway_port))
        r, w = await asyncio.open_connection("127.0.0.1", h.gateway_port)
        held.append((r, w))
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            got = await _until_closed(r)
            _check(got == b"", "a connection over the per-source cap was answered")
    finally:
        await _shut(*(w for _, w in held))
    return "the connection over the cap closed unanswered"


# --- admin token claims ---------------------------------------------------------------------


async def _refused(h: SecurityHarness, token: str) -> bool:
    async with httpx.AsyncClient(timeout=BOUND) as c:
        resp = await c.get(
            h.gateway_url + "/admin/v1/health", headers={"Authorization": f"Bearer {token}"}
        )
    return resp.status_code == 401


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "probe",
        "aud": AUD,
        "iat": now,
        "exp": now + 600,
        "jti": f"probe-{now}",
        "scope": "ops:read",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _claim_probe(make: Callable[[], str], what: str) -> Probe:
    async def probe(h: SecurityHarness) -> str:
        _check(await _refused(h, make()), f"a token with {what} was accepted")
        return f"{what}: 401"

    return probe


def _alg_none() -> str:
    head = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(_claims()).encode())
    return f"{head.decode()}.{body.decode()}."


async def valid_token_accepted(h: SecurityHarness) -> str:
    _check(not await _refused(h, _token(**_claims())), "a valid ops:read token was refused")
    return "a valid token: 200 (the claim probes are not refusing everything)"


async def revoked_token_refused(h: SecurityHarness) -> str:
    claims = _claims(jti="probe-revoked")
    token = _token(**claims)
    # the CLI revokes through the admin API, as an operator would: a tokens:write token
    operator = _token(**_claims(jti="probe-operator", scope="tokens:write"))
    proc = await asyncio.create_subprocess_exec(
        *_deskbridge(),
        "token",
        "revoke",
        claims["jti"],
        "--exp",
        str(claims["exp"]),
        "--url",
        h.gateway_url,
        env={**h._env(h.dir / "accounts.yaml"), "DESKBRIDGE_TOKEN": operator},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(BOUND * 3):
        code = await proc.wait()
    _check(code == 0, f"deskbridge token revoke exited {code}")
    _check(await _refused(h, token), "a revoked token was accepted")
    return "deskbridge token revoke JTI: the token gets 401"


def _deskbridge() -> list[str]:
    from tests.faults.harness import _entry

    return _entry()


# --- erasure leftovers ---------------------------------------------------------------------


async def erasure_leaves_no_provider_id(h: SecurityHarness) -> str:
    user_id, update_id = 770000123, 880000456
    body = sample_update("probe", update_id=update_id, chat_id=user_id, user_id=user_id)
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=BOUND) as c:
        resp = await c.post(
            f"{h.gateway_url}/webhooks/telegram/{ACCOUNT}", content=body, headers=headers
        )
        _check(resp.status_code == 200, f"the webhook was refused: {resp.status_code}")
        async with asyncio.timeout(BOUND * 2):
            while True:
                delivered, _ = await h.counts(ACCOUNT)
                if delivered >= 1:
                    break
                await asyncio.sleep(0.1)
        scopes = ["contacts:write", "contacts:read", f"account:{ACCOUNT}"]
        forgot = await c.post(
            f"{h.gateway_url}/admin/v1/contacts/telegram:{user_id}/forget",
            json={"account": ACCOUNT},
            headers=_ops(*scopes),
        )
        _check(forgot.status_code == 200, f"forget answered {forgot.status_code}")
    leftovers = []
    async for key in h.redis().scan_iter(count=1000):
        name = key.decode(errors="replace")
        if str(user_id) in name or str(update_id) in name:
            # the probe's own made-up ids, not a customer's: safe to show where they are
            leftovers.append(name.replace(str(user_id), "<user>").replace(str(update_id), "<msg>"))
    _check(not leftovers, f"keys still naming provider ids after forget: {sorted(set(leftovers))}")
    return "no key name holds the forgotten customer's provider ids"


PROBES = [
    Spec("health and readiness name no account", health_names_no_account),
    Spec("metrics are not public", metrics_not_public),
    Spec("slow clients are cut off", slow_clients_cut_off),
    Spec("connections per source are capped", connections_per_source_capped),
    Spec("a valid admin token is accepted", valid_token_accepted),
    Spec("alg none is refused", _claim_probe(_alg_none, "alg none")),
    Spec(
        "a wrong audience is refused",
        _claim_probe(lambda: _token(**_claims(aud="other")), "a wrong aud"),
    ),
    Spec(
        "an expired token is refused",
        _claim_probe(lambda: _token(**_claims(exp=int(time.time()) - 120)), "an expired exp"),
    ),
    Spec(
        "a token without iat is refused",
        _claim_probe(lambda: _token(**_claims(iat=None)), "no iat"),
    ),
    Spec(
        "a token issued in the future is refused",
        _claim_probe(lambda: _token(**_claims(iat=int(time.time()) + 300)), "iat 300 s ahead"),
    ),
    Spec(
        "an over-long lifetime is refused",
        _claim_probe(
            lambda: _token(**_claims(exp=int(time.time()) + 10 * 365 * 86400)), "exp 10 years ahead"
        ),
    ),
    Spec("a revoked token is refused", revoked_token_refused, short=False),
    Spec(
        "erasure leaves no provider id in key names",
        erasure_leaves_no_provider_id,
    ),
]
"""Every probe, in the order they run (``short``: also in ``make test``)."""


async def run_probes(*, short: bool) -> list[Outcome]:
    """Start the processes, run the probes, stop everything."""
    out: list[Outcome] = []
    timing = Timing(sweep_interval_seconds=1.0)
    h = SecurityHarness([ACCOUNT], timing)
    async with h:
        for spec in PROBES:
            if short and not spec.short:
                continue
            try:
                detail = await spec.probe(h)
                out.append(Outcome(spec.name, True, detail, spec.pending))
            except (Broken, TimeoutError, OSError, httpx.HTTPError) as exc:
                detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, Broken) else str(exc)
                out.append(Outcome(spec.name, False, detail, spec.pending))
    return out
