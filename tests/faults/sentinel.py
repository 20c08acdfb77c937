"""Redis Sentinel on loopback, and the failover scenario that runs against it.

``SentinelCluster`` starts Debian's ``redis-server`` twice (a primary and its replica,
append-only files on) and ``redis-sentinel`` three times (quorum 2), each on a free
127.0.0.1 port with its own directory. ``FailoverHarness`` is the fault ``Harness`` with
that cluster instead of one redis-server, ``REDIS_URL=redis+sentinel://...`` and
``DESKBRIDGE_WAIT_REPLICAS=1``, and N gateways and M workers. ``failover`` puts it under
a bounded load, ``kill -9``s the primary, restarts it once the Sentinels have promoted
the replica (as a supervisor with a restart delay would) and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from deskbridge.store import connect
from deskbridge.store.connection import disconnect

from .harness import Harness, HarnessError, Timing, _base_env, _Child, _entry, free_port
from .load import Load, converse
from .scenarios import Outcome, settle

__all__ = ["Failover", "FailoverHarness", "SentinelCluster", "failover"]

MASTER = "deskbridge"


class SentinelCluster:
    """A primary (``redis-a``), its replicas (``redis-b``, ...) and three Sentinels under
    ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        replicas: int = 1,
        down_after_ms: int = 1000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """``replicas``: how many replicas ``redis-a`` starts with (``redis-b``, ``-c``);
        ``password``: the nodes' ``requirepass`` (and ``masterauth``);
        ``sentinel_password``: the Sentinels' own ``requirepass``."""
        self.root = root
        self.replicas = replicas
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.ports = {f"redis-{'abcd'[i]}": free_port() for i in range(replicas + 1)}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.nodes: dict[str, _Child] = {}
        self.sentinels: list[_Child] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def _binary(self, name: str) -> str:
        found = shutil.which(name)
        if found is None:
            raise HarnessError(f"{name} is not installed (make test installs it)")
        return found

    def _node_argv(self, name: str, replica_of: str | None = None) -> list[str]:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        argv = [
            self._binary("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(self.ports[name]),
            "--dir", str(d),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            # Redis waits 5 s by default for more replicas before a full sync starts
            "--repl-diskless-sync-delay", "0",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is None and name != "redis-a":
            replica_of = "redis-a"
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.ports[replica_of])]
        return argv

    def _sentinel_conf(self, i: int) -> Path:
        d = self.root / f"sentinel-{i}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"  # the Sentinel rewrites it: its own copy
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.sentinel_ports[i]}",
                    f"dir {d}",
                    "daemonize no",
                    f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['redis-a']} 2",
                    f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}",
                    f"sentinel failover-timeout {MASTER} 10000",
                    f"sentinel parallel-syncs {MASTER} 1",
                    *([f"sentinel auth-pass {MASTER} {self.password}"] if self.password else []),
                    *(
                        [
                            f"requirepass {self.sentinel_password}",
                            f"sentinel sentinel-pass {self.sentinel_password}",
                        ]
                        if self.sentinel_password
                        else []
                    ),
                    "",
                ]
            )
        )
        return conf

    async def start(self) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in self.ports:
            self.nodes[name] = _Child(
                name, self._node_argv(name), _base_env(), logs / f"{name}.log"
            )
            self.nodes[name].spawn()
            await self._until_ping(name, self.ports[name])
        await self.until_replicas(self.replicas, limit=20)
        for i in range(3):
            argv = [self._binary("redis-sentinel"), str(self._sentinel_conf(i))]
            child = _Child(f"sentinel-{i}", argv, _base_env(), logs / f"sentinel-{i}.log")
            child.spawn()
            self.sentinels.append(child)
            await self._until_ping(child.name, self.sentinel_ports[i])
        await self._until_sentinels_agree(limit=30)

    async def stop(self) -> None:
        for child in [*self.sentinels, *self.nodes.values()]:
            await child.stop(10)

    def _client(self, port: int) -> aioredis.Redis:
        sentinel = port in self.sentinel_ports
        password = self.sentinel_password if sentinel else self.password
        return aioredis.Redis(
            host="127.0.0.1", port=port, password=password, socket_connect_timeout=1,
            socket_timeout=2,
        )  # fmt: skip

    async def _until_ping(self, name: str, port: int, limit: float = 20) -> None:
        client = self._client(port)
        deadline = time.monotonic() + limit
        try:
            while True:
                child = self.nodes.get(name) or next(c for c in self.sentinels if c.name == name)
                if not child.alive:
                    raise HarnessError(f"{name} exited:\n{child.tail()}")
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                if time.monotonic() > deadline:
                    raise HarnessError(f"{name} did not answer within {limit:g}s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def _sentinel_state(self, port: int) -> dict[str, Any]:
        client = self._client(port)
        try:
            masters: dict[str, Any] = await client.sentinel_masters()
            return dict(masters.get(MASTER) or {})
        finally:
            await client.aclose()

    async def _until_sentinels_agree(self, limit: float) -> None:
        """Until every Sentinel sees the two others and the replica (a failover needs it)."""
        deadline = time.monotonic() + limit
        while True:
            states = []
            for port in self.sentinel_ports:
                with contextlib.suppress(Exception):
                    states.append(await self._sentinel_state(port))
            if len(states) == 3 and all(
                s.get("num-other-sentinels") == 2 and s.get("num-slaves", 0) >= self.replicas
                for s in states
            ):
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"the Sentinels did not agree within {limit:g}s: {states}")
            await asyncio.sleep(0.1)

    async def primary(self) -> str:
        """The node the Sentinels name primary now (a majority of those that answer)."""
        votes: dict[int, int] = {}
        for port in self.sentinel_ports:
            with contextlib.suppress(Exception):
                state = await self._sentinel_state(port)
                votes[int(state["port"])] = votes.get(int(state["port"]), 0) + 1
        if not votes:
            raise HarnessError("no Sentinel answered")
        port = max(votes, key=lambda p: votes[p])
        return next(n for n, p in self.ports.items() if p == port)

    def kill9(self, name: str) -> None:
        self.nodes[name].kill9()

    def restart(self, name: str, replica_of: str) -> None:
        """Start a killed node again with its own files, as a replica of ``replica_of``
        (the primary the Sentinels name), as a Sentinel-aware start script does. Started
        as a primary it would serve its stale data until a Sentinel converts it (up to
        10 s: they look at a node's role every 10 s)."""
        self.nodes[name].argv = self._node_argv(name, replica_of)
        self.nodes[name].spawn()

    async def until_primary_is_not(self, old: str, limit: float) -> str:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with contextlib.suppress(HarnessError):
                now = await self.primary()
                if now != old:
                    return now
            await asyncio.sleep(0.05)
        raise HarnessError(f"no failover from {old} within {limit:g}s")

    async def until_replicas(self, n: int, limit: float) -> None:
        """Until the current primary (by the nodes' own word) has ``n`` replicas in sync."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for name, port in self.ports.items():
                if not self.nodes[name].alive:
                    continue
                client = self._client(port)
                try:
                    info = await client.info("replication")
                except (RedisError, OSError):  # a node starting, or loading its file
                    continue
                finally:
                    await client.aclose()
                online = sum(
                    1
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                )
                if info.get("role") == "master" and online >= n:
                    return
            await asyncio.sleep(0.1)
        raise HarnessError(f"the primary had no {n} replica(s) in sync within {limit:g}s")


class FailoverHarness(Harness):
    """``Harness`` on a ``SentinelCluster``, with ``gateways`` gateways and ``workers``
    workers (``serve`` and ``worker`` processes), acknowledging only what a replica holds."""

    def __init__(
        self,
        accounts: list[str],
        timing: Timing,
        *,
        gateways: int = 2,
        workers: int = 2,
        replicas: int = 1,
        log_level: str = "INFO",
    ) -> None:
        super().__init__(accounts, timing, log_level=log_level)
        self.cluster = SentinelCluster(self.dir / "cluster", replicas=replicas)
        self.gateway_ports = [free_port() for _ in range(gateways)]
        self.worker_ports = [free_port() for _ in range(workers)]
        self.gateways: list[_Child] = []
        self.workers: list[_Child] = []
        self._client: aioredis.Redis | None = None

    @property
    def redis_url(self) -> str:
        return self.cluster.url

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.gateway_ports]

    def redis(self) -> aioredis.Redis:
        # the test's own client follows the failover too
        if self._client is None:
            self._client = connect(self.redis_url)
        return self._client

    async def __aenter__(self) -> FailoverHarness:
        await super().__aenter__()
        return self

    async def start(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        await self.desk.start()
        await self.telegram.start()
        config = self.dir / "accounts.yaml"
        config.write_text(json.dumps(self._accounts_doc(), indent=2))  # JSON is YAML
        await self.cluster.start()
        env = self._env(config)
        env["DESKBRIDGE_WAIT_REPLICAS"] = "1"
        env["DESKBRIDGE_WAIT_TIMEOUT_MS"] = "500"
        env["DESKBRIDGE_SHUTDOWN_TIMEOUT_SECONDS"] = "5"
        logs = self.dir / "logs"
        for i, port in enumerate(self.gateway_ports):
            argv = [*_entry(), "serve", "--port", str(port)]
            self.gateways.append(_Child(f"gateway-{i}", argv, env, logs / f"gateway-{i}.log"))
        for i, port in enumerate(self.worker_ports):
            argv = [*_entry(), "worker", "--port", str(port)]
            self.workers.append(_Child(f"worker-{i}", argv, env, logs / f"worker-{i}.log"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=30)
        )
        for child in [*self.gateways, *self.workers]:
            child.spawn()
        for child, port in zip(self.gateways, self.gateway_ports, strict=True):
            await self._wait_http(child, port, "/readyz")
        for child, port in zip(self.workers, self.worker_ports, strict=True):
            await self._wait_http(child, port, "/readyz")

    async def stop(self) -> None:
        for child in [*self.workers, *self.gateways]:
            await child.stop(10)
        if self.session is not None:
            await self.session.close()
        if self._client is not None:
            await disconnect(self._client)
            self._client = None
        await self.cluster.stop()
        await self.desk.stop()
        await self.telegram.stop()
        if self._own_dir and not os.environ.get("DESKBRIDGE_FAULTS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def tails(self, lines: int = 15) -> str:
        children = [*self.gateways, *self.workers, *self.cluster.sentinels]
        return "\n".join(f"--- {c.name}\n{c.tail(lines)}" for c in children)

    async def ready(self) -> list[int]:
        """``/readyz`` status of every gateway and worker now."""
        assert self.session is not None
        out = []
        for port in [*self.gateway_ports, *self.worker_ports]:
            try:
                async with self.session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    out.append(resp.status)
            except (aiohttp.ClientError, OSError):
                out.append(0)
        return out


@dataclass
class Failover:
    killed: str = ""
    promoted: str = ""
    switch_s: float = 0.0
    """From the kill to the Sentinels naming the replica primary."""
    rejoin_s: float = 0.0
    """From the kill to the old primary back, as a replica in sync."""
    first_ack_s: float = 0.0
    """From the kill to the first request acknowledged after it."""
    refused: int = 0
    """Answers other than 200 (503s and refused connections), each retried."""
    refused_s: float = 0.0
    """From the first request that was not acknowledged to the last one."""
    statuses: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    """Jobs in progress when the primary died: the most duplicate appends there can be."""
    ready_after: list[int] = field(default_factory=list)
    seconds: float = 0.0
    outcome: Outcome = field(default_factory=Outcome)


def merged(loads: list[Load]) -> Load:
    out = Load()
    for load in loads:
        out.acked.update(load.acked)
        out.responses += load.responses
        out.gave_up += load.gave_up
    return out


async def failover(
    h: FailoverHarness,
    *,
    account: str,
    chats: int,
    interval: float,
    before_s: float,
    after_s: float,
    restart_delay_s: float,
    drain_timeout: float,
) -> Failover:
    """``chats`` customers (spread over the gateways) each write every ``interval``
    seconds; after ``before_s`` the primary is killed with SIGKILL; once the Sentinels
    have promoted the replica, and ``restart_delay_s`` later, the old primary is
    restarted; the load goes on ``after_s`` past its rejoining, then everything
    acknowledged must reach the desk."""
    assert h.session is not None
    h.desk.account(account).latency = 0.01
    stop = asyncio.Event()
    ids = list(range(5000, 5000 + chats))
    groups = [ids[i :: len(h.gateway_urls)] for i in range(len(h.gateway_urls))]
    started = time.monotonic()
    tasks = [
        asyncio.create_task(
            converse(h.session, url, account, group, 100_000, interval=interval, stop=stop,
                     deadline=before_s + after_s + 120)
        )
        for url, group in zip(h.gateway_urls, groups, strict=True)
    ]  # fmt: skip
    result = Failover()
    killed_at = time.monotonic()
    try:
        await asyncio.sleep(before_s)
        result.killed = await h.cluster.primary()
        result.in_flight = await h.in_progress()
        killed_at = time.monotonic()
        h.cluster.kill9(result.killed)
        result.promoted = await h.cluster.until_primary_is_not(result.killed, limit=60)
        result.switch_s = time.monotonic() - killed_at
        await asyncio.sleep(restart_delay_s)
        h.cluster.restart(result.killed, replica_of=await h.cluster.primary())
        await h.cluster.until_replicas(h.cluster.replicas, limit=60)
        result.rejoin_s = time.monotonic() - killed_at
        await asyncio.sleep(after_s)
    finally:
        stop.set()
        load = merged(list(await asyncio.gather(*tasks)))
    h.desk.account(account).latency = 0.0
    after = [r.answered for r in load.responses if r.status == 200 and r.sent > killed_at]
    result.first_ack_s = min(after) - killed_at if after else 0.0
    refused = [r for r in load.responses if r.status != 200]
    result.refused = len(refused)
    if refused:
        result.refused_s = max(r.answered for r in refused) - min(r.sent for r in refused)
    result.statuses = dict(load.statuses())
    result.outcome = await settle(h, account, load, drain_timeout)
    result.ready_after = await h.ready()
    result.seconds = time.monotonic() - started
    return result
