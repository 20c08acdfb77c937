"""The Redis pool, the eviction-policy check, and the private redis-server of ``run``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError, ResponseError

from deskbridge.errors import ConfigError, StoreUnavailable
from deskbridge.store.mux import MuxRedis

__all__ = [
    "CONNECTION_LOST",
    "UNAVAILABLE",
    "Connection",
    "MuxArqRedis",
    "PrivateRedis",
    "Structures",
    "Target",
    "arq_pool",
    "arq_settings",
    "cause",
    "check_policy",
    "connect",
    "disconnect",
    "guarded",
    "honour_cancel",
    "muxed_arq",
    "parse_url",
    "primary",
    "structures",
    "translated",
]

log = logging.getLogger(__name__)

Connection: TypeAlias = aioredis.Redis
"""The process's Redis pool: callers outside the store hold it only to hand it on."""

CONNECTION_LOST: tuple[type[BaseException], ...] = (RedisError, OSError)
"""What a client of ours or arq's raises when Redis goes away (arq's worker lets them
through; the store's own methods raise ``StoreUnavailable`` instead)."""

UNAVAILABLE: tuple[type[BaseException], ...] = (StoreUnavailable, *CONNECTION_LOST)
"""What a loop that runs store methods and arq's own client catches to outlive an outage."""

_Key: TypeAlias = str | bytes
_Value: TypeAlias = str | bytes | int | float

_P = ParamSpec("_P")
_T = TypeVar("_T")
_C = TypeVar("_C", bound=type)


class Structures(Protocol):
    """The hash, list and set commands the store uses, typed as the async client runs
    them (redis-py types them ``Awaitable[T] | T``, for its sync and async clients)."""

    async def hget(self, name: _Key, key: _Key) -> bytes | None: ...
    async def hgetall(self, name: _Key) -> dict[bytes, bytes]: ...
    async def hset(
        self,
        name: _Key,
        key: _Key | None = None,
        value: _Value | None = None,
        mapping: dict[Any, Any] | None = None,
    ) -> int: ...
    async def hdel(self, name: _Key, *keys: _Key) -> int: ...
    async def hexists(self, name: _Key, key: _Key) -> bool: ...
    async def hkeys(self, name: _Key) -> list[bytes]: ...
    async def lindex(self, name: _Key, index: int) -> bytes | None: ...
    async def llen(self, name: _Key) -> int: ...
    async def lrange(self, name: _Key, start: int, end: int) -> list[bytes]: ...
    async def lrem(self, name: _Key, count: int, value: _Value) -> int: ...
    async def sadd(self, name: _Key, *values: _Value) -> int: ...
    async def smembers(self, name: _Key) -> set[bytes]: ...
    async def sunion(self, keys: Sequence[_Key]) -> set[bytes]: ...
    async def sunionstore(self, dest: _Key, keys: Sequence[_Key]) -> int: ...


def structures(redis: aioredis.Redis) -> Structures:
    """``redis`` seen through ``Structures`` (the same client; one cast, here)."""
    return cast(Structures, redis)


async def disconnect(connection: Connection) -> None:
    """Close the pool ``connect`` opened, and its Sentinel clients (its owner calls this
    once, at exit)."""
    await connection.aclose()
    await _close_sentinels(connection.connection_pool)


async def _close_sentinels(pool: Any) -> None:
    if isinstance(pool, SentinelConnectionPool):
        for client in pool.sentinel_manager.sentinels:
            await client.aclose()


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for the one Redis at ``url`` (its pool is arq's own);
    a Sentinel URL takes ``arq_pool`` instead."""
    return RedisSettings.from_dsn(url)


class MuxArqRedis(MuxRedis, ArqRedis):  # type: ignore[misc]  # redis-py's own mixins disagree
    """arq's client with its commands multiplexed on one connection (``store.mux``)."""


def muxed_arq(client: ArqRedis) -> ArqRedis:
    """``client`` (arq's, from ``create_pool``) as a ``MuxArqRedis`` on the same pool,
    which it now owns: arq's polls, job reads and job ends share one connection with
    every other command of the worker's turn of the loop."""
    muxed = MuxArqRedis(
        connection_pool=client.connection_pool,
        job_serializer=client.job_serializer,
        job_deserializer=client.job_deserializer,
        default_queue_name=client.default_queue_name,
        expires_extra_ms=client.expires_extra_ms,
    )
    muxed.auto_close_connection_pool = True
    return muxed


class _SentinelArqRedis(MuxRedis, ArqRedis):  # type: ignore[misc]  # as MuxArqRedis
    """arq's client of a Sentinel-named primary (multiplexed, ``store.mux``); closing it
    closes its Sentinel clients."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await _close_sentinels(self.connection_pool)


def arq_pool(url: str) -> ArqRedis | None:
    """For a Sentinel URL, a new arq client of the primary the same Sentinels name, with
    the same options as ``connect`` (arq's ``RedisSettings`` has no Sentinel password or
    TLS options); arq's worker closes it. None for one Redis (``arq_settings`` then)."""
    target = parse_url(url)
    if not target.sentinel:
        return None
    client = _sentinel(target).master_for(
        target.master, redis_class=_SentinelArqRedis, **_primary_kwargs(target), **_POOL
    )
    return cast(ArqRedis, client)


def honour_cancel() -> None:
    """Raise ``CancelledError`` when the current task was asked to stop and the request
    got lost: redis-py sends each command through ``asyncio.wait_for``, which on Python
    3.11 swallows a cancel landing as the send completes (the task still counts it).
    Loops that run Redis commands call this before they go round again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def cause(exc: BaseException) -> str:
    """The name of the Redis or socket error behind ``exc`` (for logs and /readyz)."""
    inner = exc.__cause__ if isinstance(exc, StoreUnavailable) else None
    return type(inner or exc).__name__


def translated(fn: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """``fn`` with Redis and socket errors raised as ``StoreUnavailable`` (the store's edge)."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{fn.__qualname__}: {type(exc).__name__}") from exc

    return wrapper


def guarded(cls: _C) -> _C:
    """Class decorator: every public coroutine method of ``cls`` is ``translated``."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, translated(member))
    return cls


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_DIRECT_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_PORT = 26379
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_QUERY_OPTIONS = ("sentinel_username", "sentinel_password", *_SSL_OPTIONS)


@dataclass(frozen=True, slots=True)
class Target:
    """Where ``REDIS_URL`` points: one Redis (``redis://``, ``rediss://``, ``unix://``), or
    the primary the Sentinels name (``redis+sentinel://`` and ``rediss+sentinel://``).
    ``str()`` is safe to log and print: it never holds a password."""

    url: str = field(repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    ssl: tuple[tuple[str, str], ...] = ()
    """redis-py's ``ssl_*`` options from the query, for the Sentinels and the primary."""

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def __str__(self) -> str:
        if not self.sentinel:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            where = f"{host}:{parts.port or 6379}" if host else parts.path
            return f"{parts.scheme}://{where}"
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        scheme = SENTINEL_SCHEMES[self.tls]
        return f"{scheme}://{hosts}/{self.master}/{self.db}"


def _bad(what: str) -> ConfigError:
    return ConfigError(f"REDIS_URL is not valid: {what}")


def parse_url(url: str) -> Target:
    """``url`` checked and parsed. Raises ``ConfigError`` (one line, no password in it)
    for an unknown scheme or a malformed Sentinel URL:
    ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/DB]
    [?sentinel_password=...&sentinel_username=...&ssl_ca_certs=...]``."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in (*_DIRECT_SCHEMES, *SENTINEL_SCHEMES):
        shown = scheme if sep and scheme.isascii() and len(scheme) < 32 else "?"
        raise _bad(
            f"scheme {shown!r}; use redis://, rediss://, unix://, redis+sentinel:// "
            "or rediss+sentinel://"
        )
    if scheme in _DIRECT_SCHEMES:
        return Target(url=url)
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if not hostlist:
        raise _bad("no Sentinel host (redis+sentinel://host1:26379,host2:26379/MASTER/DB)")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host(h) for h in hostlist.split(","))
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if not segments or not segments[0] or len(segments) > 2:
        raise _bad("the path must be /MASTER or /MASTER/DB (the Sentinels' name of the primary)")
    master = segments[0]
    db_text = segments[1] if len(segments) == 2 and segments[1] else "0"
    if not db_text.isdigit():
        raise _bad(f"the database must be a number, not {db_text[:16]!r}")
    query: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in _QUERY_OPTIONS:
            raise _bad(f"unknown option {name[:32]!r} (known: {', '.join(_QUERY_OPTIONS)})")
        if len(values) != 1:
            raise _bad(f"option {name!r} is given {len(values)} times")
        query[name] = values[0]
    ssl = tuple((k, v) for k, v in query.items() if k in _SSL_OPTIONS)
    tls = scheme == SENTINEL_SCHEMES[1]
    if ssl and not tls:
        raise _bad("ssl_* options need rediss+sentinel://")
    return Target(
        url=url,
        sentinels=sentinels,
        master=master,
        db=int(db_text),
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        tls=tls,
        ssl=ssl,
    )


def _host(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` of one Sentinel."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
        if not bracket or (rest and not rest.startswith(":")):
            raise _bad(f"Sentinel address {text[:64]!r}")
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in "/?#@ "):
        raise _bad(f"Sentinel address {text[:64]!r} (hosts are comma-separated host:port)")
    if not port_text:
        return host, _SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(f"Sentinel port {port_text[:16]!r} of {host[:64]!r}")
    return host, int(port_text)


_POOL: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
    "max_connections": 200,
}
_SENTINEL_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}
"""A Sentinel that does not answer within these is skipped for the next one."""


def _tls(target: Target) -> dict[str, Any]:
    return {"ssl": True, **dict(target.ssl)} if target.tls else {}


def _primary_kwargs(target: Target) -> dict[str, Any]:
    return {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "decode_responses": False,
        **_tls(target),
    }


def _sentinel(target: Target) -> Sentinel:
    """redis-py's Sentinel manager for ``target`` (its own credentials and TLS)."""
    kwargs: dict[str, Any] = {**_SENTINEL_TIMEOUTS, **_tls(target)}
    if target.sentinel_username is not None:
        kwargs["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        kwargs["password"] = target.sentinel_password
    # redis-py leaves Sentinel's constructor unannotated
    return Sentinel(list(target.sentinels), sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call]


def connect(url: str) -> aioredis.Redis:
    """One pool per process; bytes in and out (records are sealed binary). With a
    Sentinel URL every new connection asks the Sentinels for the primary, so a failover
    is followed without a restart. Raises ``ConfigError`` for a malformed URL (nothing is
    connected yet: the first command connects)."""
    target = parse_url(url)
    if target.sentinel:
        client: aioredis.Redis = _sentinel(target).master_for(
            target.master, redis_class=MuxRedis, **_primary_kwargs(target), **_POOL
        )
        return client
    try:
        direct: aioredis.Redis = MuxRedis.from_url(url, decode_responses=False, **_POOL)
    except ValueError as exc:  # its messages name the part, never the password
        raise _bad(str(exc)) from exc
    return direct


def primary(redis: aioredis.Redis) -> str:
    """Which Redis ``redis`` talks to (``host:port`` or a socket path; with Sentinel,
    the primary they named last and the name asked for). No credentials."""
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        where = f"{address[0]}:{address[1]}" if address else "not resolved yet"
        return f"{where} (Sentinel primary {pool.service_name!r})"
    kwargs = pool.connection_kwargs
    path = kwargs.get("path")
    return str(path) if path else f"{kwargs.get('host')}:{kwargs.get('port')}"


async def _sentinel_report(redis: aioredis.Redis, exc: BaseException) -> str:
    """Why a Sentinel-named primary cannot be used, in one phrase: how many Sentinels
    answered, whether any names a healthy primary of that name, and if one does, what
    the primary answered (``exc``'s type: a refused password, say)."""
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return ""
    manager = pool.sentinel_manager
    name = pool.service_name
    answered = 0
    states: list[dict[str, Any]] = []
    for client in manager.sentinels:
        try:
            masters = await client.sentinel_masters()
        except (RedisError, OSError):
            continue
        answered += 1
        if name in masters:
            states.append(masters[name])
    addresses = (c.connection_pool.connection_kwargs for c in manager.sentinels)
    where = ", ".join(f"{a['host']}:{a['port']}" for a in addresses)
    if answered == 0:
        return f"no Sentinel answered ({where})"
    of = f"{answered} of {len(manager.sentinels)} Sentinels answered"
    if not states:
        return f"{of}; none knows a primary named {name!r}"
    healthy = [s for s in states if manager.check_master_state(s, name)]
    if not healthy:
        return f"{of}; the primary {name!r} they name is down"
    at = f"{healthy[0]['ip']}:{healthy[0]['port']}"
    return f"{of}; the primary {name!r} at {at} failed: {type(exc).__name__}"


async def check_policy(redis: aioredis.Redis) -> None:
    """Refuse a Redis that may evict keys: an evicted dedup mark or event is a silent loss.

    Raises ``ConfigError`` for a wrong policy, ``StoreUnavailable`` when unreachable.
    """
    try:
        try:
            conf = await redis.config_get("maxmemory-policy")
            policy = conf.get(b"maxmemory-policy", conf.get("maxmemory-policy"))
        except ResponseError:  # managed Redis services often disable CONFIG
            info = await redis.info("memory")
            policy = info.get("maxmemory_policy")
    except (RedisError, OSError) as exc:
        why = await _sentinel_report(redis, exc) or type(exc).__name__
        raise StoreUnavailable(f"Redis is not reachable: {why}") from exc
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy != "noeviction":
        raise ConfigError(
            f"Redis maxmemory-policy is {policy!r}; deskbridge needs 'noeviction' "
            "(an evicted event or dedup mark would be lost silently). "
            "Set it with: CONFIG SET maxmemory-policy noeviction (and in redis.conf)."
        )


class PrivateRedis:
    """A redis-server child on a unix socket in the data directory, append-only file on.

    Used by ``deskbridge run`` when no ``REDIS_URL`` is set. ``stop`` shuts it down
    cleanly (the append-only file is flushed) and is safe to call twice.
    """

    def __init__(self, data_dir: Path, *, appendfsync: str = "everysec") -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = self.dir / "redis.sock"
        if len(str(self.socket)) > 100:
            # a unix socket path holds at most 107 bytes: a deep data directory gets its
            # socket in a private folder of the temp directory, named after the data dir
            digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
            short = Path(tempfile.gettempdir()) / f"deskbridge-{os.getuid()}-{digest}"
            self.socket = short / "redis.sock"
        self._appendfsync = appendfsync
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self, wait: float = 10.0) -> None:
        """Start the server and wait (up to ``wait`` seconds) until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "redis-server is not installed: install the Debian/Ubuntu package "
                "'redis-server' (sudo apt-get install redis-server), or set REDIS_URL"
            )
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket.parent != self.dir:
            _private_dir(self.socket.parent)
        if len(str(self.socket)) > 100:
            raise ConfigError(
                f"the temp directory path is too long for a unix socket: {self.socket}"
            )
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self._appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            # Redis's 64 MB default rewrites the AOF every ~15 s at 2,000 acks/s: a fork
            # and a child writing the file on the same cores, each a latency spike
            "--auto-aof-rewrite-min-size",
            "256mb",
            "--logfile",
            str(self.dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        deadline = time.monotonic() + wait
        client = aioredis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                if self._proc.returncode is not None:
                    code = self._proc.returncode
                    raise StoreUnavailable(
                        f"redis-server exited ({code}); see {self.dir / 'redis.log'}"
                    )
                try:
                    if await client.ping():
                        break
                except (RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"redis-server did not start within {wait:.0f}s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        log.info("private redis-server started", extra={"socket": str(self.socket)})

    async def stop(self, wait: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()  # SIGTERM: redis-server flushes the AOF and exits
        try:
            await asyncio.wait_for(proc.wait(), wait)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _private_dir(path: Path) -> None:
    """Create ``path`` as a folder only this user may enter, or check that it is one (not
    a symlink, owned by this user, no group or other permissions)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    found = path.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise ConfigError(f"{path} is not a private folder of this user (for the Redis socket)")
