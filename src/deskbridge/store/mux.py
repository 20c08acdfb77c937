"""Many tasks' Redis commands on one connection (multiplexing).

redis-py gives every command in flight a connection of its own: with fifty deliveries
at work, a round trip is a send, a wake-up and a read on its own socket, and on a small
VM those system calls cost more than the command (a GET: ~100 µs of CPU alone, ~15 µs
when twenty share one write and one read; ``docs/benchmarks.md``). ``MuxRedis`` is
redis-py's client with ordinary commands, scripts and pipelines (transactions too)
sent on one shared connection instead: the commands of one turn of the event loop go
out in one write, and one reader hands each answer to its caller in order (Redis
answers one connection's commands in the order they came).

What stays on redis-py's own connections: anything that changes a connection's state
or blocks it (``WATCH`` and the transactions after it, blocking pops, ``WAIT``,
``SELECT``, pub/sub, ``MONITOR``...), a pipeline that runs a script (redis-py checks
and loads its scripts first), and every command of a client bound to one connection.

Failure is redis-py's: an error reply is raised to its caller as the same exception
class; a lost connection fails every command in flight on it with ``ConnectionError``
(each may or may not have been applied, as with a connection of its own) and the next
command connects again. A server that closes the connection is noticed at once (the
reader is always reading), and one that stops answering for ``socket_timeout`` seconds
has its connection closed. A transaction's commands are written in one piece, so no
other caller's command falls between its ``MULTI`` and ``EXEC``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ConnectionError,
    DataError,
    ExecAbortError,
    InvalidResponse,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    WatchError,
)

__all__ = ["Multiplexer", "MuxRedis"]

log = logging.getLogger(__name__)

_DEDICATED = frozenset(
    name.encode() if isinstance(name, str) else name
    for name in (
        # connection state
        "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD", "SELECT", "AUTH", "HELLO",
        "CLIENT", "RESET", "QUIT", "READONLY", "READWRITE", "SWAPDB",
        # a connection of their own, or blocking it
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP",
        "BZPOPMIN", "BZPOPMAX", "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF",
        "DEBUG", "SHUTDOWN",
    )
)  # fmt: skip
"""Commands (upper case) that keep to redis-py's own connections."""

_NEVER_DECODE = "NEVER_DECODE"
_EMPTY_RESPONSE = "EMPTY_RESPONSE"


def _name(arg: Any) -> bytes:
    name = arg if isinstance(arg, bytes) else str(arg).encode()
    return name.split(b" ", 1)[0].upper()


def pack(args: tuple[Any, ...]) -> bytes:
    """``args`` as one RESP command (hiredis's packer; redis-py's ``DataError`` for a
    value Redis cannot take)."""
    if isinstance(args[0], str) and " " in args[0]:
        args = (*args[0].split(), *args[1:])  # "SCRIPT LOAD", as redis-py's packer does
    try:
        # hiredis's stub declares a one-element tuple and an untyped result
        return hiredis.pack_command(args)  # type: ignore[no-any-return]
    except TypeError:
        bad = next((a for a in args if not isinstance(a, bytes | str | int | float)), None)
        raise DataError(
            f"Invalid input of type: '{type(bad).__name__}'. "
            "Convert to a bytes, string, int or float first."
        ) from None


class _Request:
    __slots__ = ("future", "replies", "wanted")

    def __init__(self, future: asyncio.Future[list[Any]], wanted: int) -> None:
        self.future = future
        self.wanted = wanted
        self.replies: list[Any] = []


class Multiplexer:
    """One connection of ``pool`` shared by every caller of ``call``."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        timeout = pool.connection_kwargs.get("socket_timeout")
        self._timeout: float | None = float(timeout) if timeout else None
        self._conn: Any = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: list[tuple[bytes, _Request]] = []
        self._waiting: deque[_Request] = deque()
        self._scheduled = False
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self.writes = 0
        self.requests = 0

    def call(self, packed: bytes, replies: int) -> asyncio.Future[list[Any]]:
        """Send ``packed`` (``replies`` commands); the future gets their replies, error
        replies as exception values. Fails with ``ConnectionError`` when the connection
        is lost before every reply came."""
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), replies)
        if self._closed:
            request.future.set_exception(ConnectionError("the Redis client is closed"))
            return request.future
        self._pending.append((packed, request))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return request.future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        conn = self._conn
        if conn is None or conn._writer is None or conn._writer.is_closing():
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        batch, self._pending = self._pending, []
        if not self._waiting:
            # the silence ``socket_timeout`` bounds starts now, not at the last answer
            self._progress = asyncio.get_running_loop().time()
        for _, request in batch:
            self._waiting.append(request)
        self.writes += 1
        self.requests += len(batch)
        if len(batch) == 1:
            conn._writer.write(batch[0][0])
        else:
            conn._writer.writelines([packed for packed, _ in batch])
        self._arm()

    async def _connect(self) -> None:
        try:
            conn = await self._pool.get_connection()
        except BaseException as exc:
            self._connecting = None
            pending, self._pending = self._pending, []
            err = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            for _, request in pending:
                if not request.future.done():
                    request.future.set_exception(err)
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting = None
        if self._closed:
            await self._release(conn)
            return
        self._conn = conn
        self._waiting = deque()  # this connection's: a dead one's fail with it, only
        self._progress = asyncio.get_running_loop().time()
        self._reader = asyncio.get_running_loop().create_task(self._read(conn, self._waiting))
        self._flush()

    async def _read(self, conn: Any, waiting: deque[_Request]) -> None:
        reader = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)
        stream = conn._reader
        loop = asyncio.get_running_loop()
        error: BaseException
        try:
            while True:
                data = await stream.read(65536)
                if not data:
                    raise ConnectionError("Connection closed by server.")
                self._progress = loop.time()
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, ReadOnlyError):
                        # a primary demoted to a replica (a failover): redis-py's
                        # Sentinel connection drops itself on this answer, and so do we
                        raise ConnectionError("the previous primary is now a replica")
                    if not waiting:
                        raise InvalidResponse("an answer nobody asked for")
                    request = waiting[0]
                    request.replies.append(reply)
                    if len(request.replies) == request.wanted:
                        waiting.popleft()
                        if not request.future.done():
                            request.future.set_result(request.replies)
        except asyncio.CancelledError:
            error = ConnectionError("the Redis client is closed")
        except (OSError, ConnectionError, InvalidResponse) as exc:
            error = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
        except Exception as exc:  # pragma: no cover - a bug: fail the callers, loudly
            log.exception("Redis multiplexer reader failed")
            error = ConnectionError(f"{type(exc).__name__}")
        await self._lost(conn, waiting, error)

    async def _lost(self, conn: Any, waiting: deque[_Request], error: BaseException) -> None:
        """The connection is gone: every caller waiting on it gets ``error`` (unless the
        watchdog failed them first); the next call connects again."""
        if self._conn is conn:
            self._conn = None
            self._reader = None
        _fail(waiting, error)
        await self._release(conn)
        if self._pending and not self._closed and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _release(self, conn: Any) -> None:
        try:
            await conn.disconnect()
        finally:
            await self._pool.release(conn)

    def _arm(self) -> None:
        """A request is out: make sure the watchdog runs (``socket_timeout``)."""
        if self._timeout is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if not self._waiting or self._conn is None:
            return
        now = asyncio.get_running_loop().time()
        assert self._timeout is not None
        if now - self._progress >= self._timeout:
            log.warning("Redis did not answer for %g s: closing the connection", self._timeout)
            _fail(self._waiting, ConnectionError(f"Redis did not answer in {self._timeout:g} s"))
            self._conn._writer.transport.abort()
            return
        self._watchdog = asyncio.get_running_loop().call_later(
            self._timeout - (now - self._progress), self._watch
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._connecting is not None:
            self._connecting.cancel()
        reader = self._reader
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        pending, self._pending = self._pending, []
        for _, request in pending:
            if not request.future.done():
                request.future.set_exception(ConnectionError("the Redis client is closed"))


def _fail(waiting: deque[_Request], error: BaseException) -> None:
    while waiting:
        request = waiting.popleft()
        if not request.future.done():
            request.future.set_exception(error)


_MUXES: weakref.WeakKeyDictionary[Any, Multiplexer] = weakref.WeakKeyDictionary()


def multiplexer(pool: Any) -> Multiplexer:
    """The multiplexer of ``pool`` (one per pool: clients sharing a pool share it)."""
    mux = _MUXES.get(pool)
    if mux is None or mux._closed or mux._loop is not asyncio.get_running_loop():
        mux = _MUXES[pool] = Multiplexer(pool)
    return mux


def _muxable(pool: Any) -> bool:
    return not pool.connection_kwargs.get("decode_responses")


class _Callbacks:
    """redis-py's response callbacks of a client by command name, looked up once per name
    (its case-insensitive dict upper-cases the name on every lookup)."""

    __slots__ = ("_found", "_of")

    def __init__(self, of: Any) -> None:
        self._of = of
        self._found: dict[Any, Any] = {}

    async def parsed(self, name: Any, reply: Any, options: dict[str, Any]) -> Any:
        """``reply`` as redis-py's client would return it."""
        try:
            callback = self._found[name]
        except KeyError:
            callback = self._found[name] = self._of.get(name)
        if callback is None:
            return reply
        if options:
            options.pop("keys", None)
            options.pop(_NEVER_DECODE, None)
            options.pop(_EMPTY_RESPONSE, None)
        value = callback(reply, **options)
        return await value if inspect.isawaitable(value) else value


class MuxRedis(aioredis.Redis):
    """redis-py's client, its commands multiplexed on one connection (module doc)."""

    _mux: Multiplexer | None = None
    _callbacks: _Callbacks | None = None

    def _multiplexer(self) -> Multiplexer | None:
        """The pool's multiplexer; None for a client bound to one connection or one that
        decodes answers (its commands take redis-py's own path)."""
        mux = self._mux
        if mux is not None and mux._loop is asyncio.get_running_loop() and not mux._closed:
            return mux
        if self.connection is not None or not _muxable(self.connection_pool):
            return None
        mux = self._mux = multiplexer(self.connection_pool)
        if self._callbacks is None:
            self._callbacks = _Callbacks(self.response_callbacks)
        return mux

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        mux = self._multiplexer()
        if mux is None or _name(args[0]) in _DEDICATED:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        (reply,) = await mux.call(pack(args), 1)
        if isinstance(reply, ResponseError):
            if _EMPTY_RESPONSE in options:
                return options[_EMPTY_RESPONSE]
            raise reply
        assert self._callbacks is not None  # set with the multiplexer
        return await self._callbacks.parsed(args[0], reply, options)

    def register_script(self, script: Any) -> Any:
        return _Script(self, script)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = MuxPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.mux = self._multiplexer()
        pipe.callbacks = self._callbacks
        return pipe

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if close_connection_pool is None:
            close_connection_pool = self.auto_close_connection_pool
        if close_connection_pool:
            mux = _MUXES.pop(self.connection_pool, None)
            self._mux = None
            if mux is not None:
                await mux.aclose()
        await super().aclose(close_connection_pool)


class _Script(AsyncScript):
    """redis-py's script, called on its own client without asking whether that client is
    a pipeline (an ``isinstance`` against redis-py's protocol classes, slow on every
    call); on another client, or a pipeline, exactly as redis-py calls it."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if client is not None:
            return await super().__call__(keys, args, client)
        keys = keys or []
        args = args or []
        client = self.registered_client
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = await client.script_load(self.script)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


class MuxPipeline(Pipeline):
    """redis-py's pipeline; without ``WATCH`` or scripts, sent on the shared connection."""

    mux: Multiplexer | None = None
    callbacks: _Callbacks | None = None

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        mux = self.mux
        if (
            mux is None
            or self.callbacks is None
            or not stack
            or self.watching
            or self.connection is not None
            or self.explicit_transaction
            or self.scripts
            or any(_name(args[0]) in _DEDICATED or _EMPTY_RESPONSE in o for args, o in stack)
        ):
            return await super().execute(raise_on_error)
        try:
            if self.is_transaction:
                return await self._transaction(mux, self.callbacks, stack, raise_on_error)
            return await self._plain(mux, self.callbacks, stack, raise_on_error)
        finally:
            await self.reset()  # type: ignore[no-untyped-call]

    async def _transaction(
        self, mux: Multiplexer, callbacks: _Callbacks, stack: Any, raise_on_error: bool
    ) -> list[Any]:
        packed = b"".join([pack(("MULTI",)), *(pack(args) for args, _ in stack), pack(("EXEC",))])
        replies = await mux.call(packed, len(stack) + 2)
        errors: list[tuple[int, Exception]] = []
        if isinstance(replies[0], ResponseError):
            errors.append((0, replies[0]))
        for i, (queued, (args, _)) in enumerate(zip(replies[1:-1], stack, strict=True)):
            if isinstance(queued, ResponseError):
                self.annotate_exception(queued, i + 1, args)
                errors.append((i, queued))
        response = replies[-1]
        if isinstance(response, ExecAbortError) or (
            isinstance(response, ResponseError) and str(response).startswith("EXECABORT")
        ):
            if errors:
                raise errors[0][1] from response
            raise response
        if isinstance(response, ResponseError):
            raise response
        if response is None:
            raise WatchError("Watched variable changed.")
        for i, e in errors:
            response.insert(i, e)
        if len(response) != len(stack):
            raise ResponseError("Wrong number of response items from pipeline execution")
        if raise_on_error:
            self.raise_first_error(stack, response)
        data = []
        for r, (args, options) in zip(response, stack, strict=True):
            data.append(
                r if isinstance(r, Exception) else await callbacks.parsed(args[0], r, options)
            )
        return data

    async def _plain(
        self, mux: Multiplexer, callbacks: _Callbacks, stack: Any, raise_on_error: bool
    ) -> list[Any]:
        packed = b"".join(pack(args) for args, _ in stack)
        replies = await mux.call(packed, len(stack))
        data = []
        for r, (args, options) in zip(replies, stack, strict=True):
            data.append(
                r if isinstance(r, Exception) else await callbacks.parsed(args[0], r, options)
            )
        if raise_on_error:
            self.raise_first_error(stack, data)
        return data
