"""The Redis pool, the eviction-policy check, and the private redis-server of ``run``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from subprocess import DEVNULL
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast

import redis.asyncio as aioredis
from arq.connections import RedisSettings
from redis.exceptions import RedisError, ResponseError

from deskbridge.errors import ConfigError, StoreUnavailable

__all__ = [
    "CONNECTION_LOST",
    "UNAVAILABLE",
    "Connection",
    "PrivateRedis",
    "Structures",
    "arq_settings",
    "cause",
    "check_policy",
    "connect",
    "disconnect",
    "guarded",
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
    async def hvals(self, name: _Key) -> list[bytes]: ...
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
    """Close the pool ``connect`` opened (its owner calls this once, at exit)."""
    await connection.aclose()


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for the Redis at ``url`` (its pool is arq's own)."""
    return RedisSettings.from_dsn(url)


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


def connect(url: str) -> aioredis.Redis:
    """One pool per process; bytes in and out (records are sealed binary)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        max_connections=200,
    )
    return client


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
        raise StoreUnavailable(f"Redis is not reachable: {type(exc).__name__}") from exc
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
        if len(str(self.socket)) > 100:
            raise ConfigError(f"the data directory path is too long for a unix socket: {self.dir}")
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
