"""Many tasks' Redis commands on one connection (multiplexing).

redis-py gives every command in flight a connection of its own: with fifty deliveries
at work, a round trip is a send, a wake-up and a read on its own socket, and on a small
VM those system calls cost more than the command (a GET: ~100 µs of CPU alone, ~15 µs
when twenty share one write and one read; ``docs/benchmarks.md``). ``MuxRedis`` is
redis-py's client with ordinary commands, scripts and pipelines (transactions too)
sent on one shared connection instead: the commands of one turn of the event loop go
out in one write, and one reader hands each answer to its caller in order (Redis
answers one connection's commands in the order they came). Once redis-py has connected
and set up the connection, the reader is the transport's own protocol: an answer
resolves its caller's future in the I/O callback that brought it, not one loop
iteration later in a reading task (under load an iteration can hold dozens of requests'
work, and every caller waited behind it).

What stays on redis-py's own connections: anything that changes a connection's state
or blocks it (``WATCH`` and the transactions after it, blocking pops, ``WAIT``,
``SELECT``, pub/sub, ``MONITOR``...), a pipeline that runs a script (redis-py checks
and loads its scripts first), and every command of a client bound to one connection.

Failure is redis-py's: an error reply is raised to its caller as the same exception
class; a lost connection fails every command in flight on it with ``ConnectionError``
(each may or may not have been applied, as with a connection of its own) and the next
command connects again. A server that closes the connection is noticed at once (the
transport tells the reader), and one that stops answering for ``socket_timeout`` seconds
has its connection closed. A transaction's commands are written in one piece, so no
other caller's command falls between its ``MULTI`` and ``EXEC``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from collections.abc import Callable
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

__all__ = ["Answered", "Multiplexer", "MuxRedis", "multiplexer", "own_multiplexer"]

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


Replies = list[Any]
Answered = Callable[[Replies | BaseException], None]
"""A request's callback: its replies (error replies as exception values), or the
``ConnectionError`` that ended it. Called from the connection's reader (no task hop)."""


class _Request:
    __slots__ = ("answered", "future", "replies", "wanted")

    def __init__(
        self, future: asyncio.Future[Replies] | None, wanted: int, answered: Answered | None
    ) -> None:
        self.future = future
        self.answered = answered
        self.wanted = wanted
        self.replies: Replies = []

    def done(self, outcome: Replies | BaseException) -> None:
        if self.answered is not None:
            try:
                self.answered(outcome)
            except Exception:  # pragma: no cover - a bug in a callback: not the reader's
                log.exception("Redis multiplexer: a request's callback failed")
            return
        future = self.future
        if future is None or future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _Link(asyncio.Protocol):
    """One connection's reader: the transport's protocol once redis-py has connected it
    (handshake done), so that answers are handed to their callers in the I/O callback
    that brought them, not one loop iteration later in a reading task."""

    def __init__(self, mux: Multiplexer, conn: Any) -> None:
        self.mux = mux
        self.conn = conn
        self.transport = conn._writer.transport
        self.waiting: deque[_Request] = deque()
        self.error: BaseException | None = None
        self.lost = mux._loop.create_future()
        self.released: asyncio.Task[None] | None = None
        self._original = self.transport.get_protocol()
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )

    def install(self) -> None:
        """Take the transport over from redis-py's stream (with anything it buffered)."""
        self.transport.set_protocol(self)
        buffered = self.conn._reader._buffer
        if buffered:
            data = bytes(buffered)
            buffered.clear()
            self.data_received(data)

    @property
    def closing(self) -> bool:
        return self.error is not None or self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.mux._progress = self.mux._loop.time()
        reader = self._reader
        waiting = self.waiting
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if isinstance(reply, ReadOnlyError):
                    # a primary demoted to a replica (a failover): redis-py's Sentinel
                    # connection drops itself on this answer, and so do we
                    raise ConnectionError("the previous primary is now a replica")
                if not waiting:
                    raise InvalidResponse("an answer nobody asked for")
                request = waiting[0]
                request.replies.append(reply)
                if len(request.replies) == request.wanted:
                    waiting.popleft()
                    request.done(request.replies)
        except (ConnectionError, InvalidResponse) as exc:
            self.fail(exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc)))

    def fail(self, error: BaseException) -> None:
        """End the connection: ``error`` for everything in flight on it."""
        if self.error is None:
            self.error = error
            self.transport.abort()

    def eof_received(self) -> bool:
        self.fail(ConnectionError("Connection closed by server."))
        return False

    def pause_writing(self) -> None:
        self._original.pause_writing()

    def resume_writing(self) -> None:
        self._original.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        # redis-py's stream waits for this in ``disconnect`` (``wait_closed``)
        self._original.connection_lost(exc)
        if self.error is None:
            self.error = ConnectionError(str(exc) if exc else "Connection closed by server.")
        if not self.lost.done():
            self.lost.set_result(None)
        self.mux._gone(self)


class Multiplexer:
    """One connection of ``pool`` shared by every caller of ``call`` and ``submit``.

    ``preamble``: commands written first on every new connection, before anything
    queued (the intake loads its scripts so that no ``NOSCRIPT`` retry can land behind
    a later call); their replies are not read by anyone."""

    def __init__(self, pool: Any, *, preamble: Callable[[], list[bytes]] | None = None) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._preamble = preamble
        timeout = pool.connection_kwargs.get("socket_timeout")
        self._timeout: float | None = float(timeout) if timeout else None
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._pending: list[tuple[bytes, _Request]] = []
        self._scheduled = False
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self.writes = 0
        self.requests = 0

    @property
    def _conn(self) -> Any:
        """redis-py's connection in use (None between connections)."""
        link = self._link
        return None if link is None else link.conn

    @property
    def _waiting(self) -> deque[_Request]:
        link = self._link
        return deque() if link is None else link.waiting

    def call(self, packed: bytes, replies: int) -> asyncio.Future[Replies]:
        """Send ``packed`` (``replies`` commands); the future gets their replies, error
        replies as exception values. Fails with ``ConnectionError`` when the connection
        is lost before every reply came."""
        future: asyncio.Future[Replies] = self._loop.create_future()
        self._queue(packed, _Request(future, replies, None))
        return future

    def submit(self, packed: bytes, replies: int, answered: Answered) -> None:
        """``call`` with a callback instead of a future: ``answered`` gets the replies (or
        the ``ConnectionError``) from the reader itself, without a task's wake-up."""
        self._queue(packed, _Request(None, replies, answered))

    def flush(self) -> None:
        """Write what is queued now instead of at the end of this turn of the loop."""
        self._flush()

    def _queue(self, packed: bytes, request: _Request) -> None:
        if self._closed:
            request.done(ConnectionError("the Redis client is closed"))
            return
        self._pending.append((packed, request))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        link = self._link
        if link is None or link.closing:
            if self._connecting is None and not self._closed:
                self._connecting = self._loop.create_task(self._connect())
            return
        batch, self._pending = self._pending, []
        waiting = link.waiting
        if not waiting:
            # the silence ``socket_timeout`` bounds starts now, not at the last answer
            self._progress = self._loop.time()
        for _, request in batch:
            waiting.append(request)
        self.writes += 1
        self.requests += len(batch)
        if len(batch) == 1:
            link.transport.write(batch[0][0])
        else:
            link.transport.writelines([packed for packed, _ in batch])
        self._arm()

    async def _connect(self) -> None:
        try:
            conn = await self._pool.get_connection()
        except BaseException as exc:
            self._connecting = None
            pending, self._pending = self._pending, []
            err = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            for _, request in pending:
                request.done(err)
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting = None
        if self._closed:
            await self._release(conn)
            return
        link = _Link(self, conn)
        link.install()
        self._link = link
        self._progress = self._loop.time()
        if self._preamble is not None:
            commands = self._preamble()
            if commands:
                ignored = [(b"", _Request(None, 1, None)) for _ in commands]
                link.waiting.extend(request for _, request in ignored)
                link.transport.writelines(commands)
        self._flush()

    def _gone(self, link: _Link) -> None:
        """``link``'s connection is gone: every caller waiting on it gets its error
        (unless the watchdog failed them first); the next call connects again."""
        if self._link is link:
            self._link = None
        assert link.error is not None
        _fail(link.waiting, link.error)
        if link.released is None:
            link.released = self._loop.create_task(self._release(link.conn))
        if self._pending and not self._closed and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    async def _release(self, conn: Any) -> None:
        try:
            await conn.disconnect()
        finally:
            await self._pool.release(conn)

    def _arm(self) -> None:
        """A request is out: make sure the watchdog runs (``socket_timeout``)."""
        if self._timeout is None or self._watchdog is not None:
            return
        self._watchdog = self._loop.call_later(self._timeout, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        link = self._link
        if link is None or not link.waiting:
            return
        now = self._loop.time()
        assert self._timeout is not None
        if now - self._progress >= self._timeout:
            log.warning("Redis did not answer for %g s: closing the connection", self._timeout)
            link.fail(ConnectionError(f"Redis did not answer in {self._timeout:g} s"))
            return
        self._watchdog = self._loop.call_later(self._timeout - (now - self._progress), self._watch)

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._connecting is not None:
            self._connecting.cancel()
        link = self._link
        if link is not None:
            link.fail(ConnectionError("the Redis client is closed"))
            await link.lost
            if link.released is not None:
                await link.released
        pending, self._pending = self._pending, []
        for _, request in pending:
            request.done(ConnectionError("the Redis client is closed"))


def _fail(waiting: deque[_Request], error: BaseException) -> None:
    while waiting:
        waiting.popleft().done(error)


_MUXES: weakref.WeakKeyDictionary[Any, Multiplexer] = weakref.WeakKeyDictionary()
_OWN: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Multiplexer]] = weakref.WeakKeyDictionary()


def multiplexer(pool: Any) -> Multiplexer:
    """The multiplexer of ``pool`` (one per pool: clients sharing a pool share it)."""
    mux = _MUXES.get(pool)
    if mux is None or mux._closed or mux._loop is not asyncio.get_running_loop():
        mux = _MUXES[pool] = Multiplexer(pool)
    return mux


def own_multiplexer(pool: Any, *, preamble: Callable[[], list[bytes]] | None = None) -> Multiplexer:
    """A multiplexer of ``pool`` with a connection of its own: its commands keep their
    order among themselves only, and a slow one (``WAIT``) holds up no other caller. It
    is closed with the pool's shared one (``MuxRedis.aclose``)."""
    mux = Multiplexer(pool, preamble=preamble)
    _OWN.setdefault(pool, weakref.WeakSet()).add(mux)
    return mux


async def close_multiplexers(pool: Any) -> None:
    """Close every multiplexer of ``pool`` (its connections go back to it)."""
    muxes = [m for m in (_MUXES.pop(pool, None),) if m is not None]
    muxes.extend(_OWN.pop(pool, ()))
    for mux in muxes:
        await mux.aclose()


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
            self._mux = None
            await close_multiplexers(self.connection_pool)
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
