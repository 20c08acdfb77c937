"""``deskbridge serve --processes N``: children share the port, a dead one is restarted,
and one scrape of ``/metrics`` sees every child's samples."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from deskbridge.cli.main import cli
from deskbridge.cli.supervise import available_cpus, parse_processes
from deskbridge.errors import ConfigError
from tests.conftest import TEST_REDIS_URL
from tests.test_cli import DESKBRIDGE, clean_env, free_port

STARTED = re.compile(r"serve process (\d+) started \(pid (\d+)\)")


@dataclass
class Group:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def children(self) -> dict[int, int]:
        """index → pid of the latest start of each child, from the supervisor's log."""
        found: dict[int, int] = {}
        for index, pid in STARTED.findall(self.log.read_text()):
            found[int(index)] = int(pid)
        return found


def listening_pids(port: int, pids: list[int]) -> set[int]:
    """Those of ``pids`` that hold a TCP socket listening on ``port`` (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    holders: set[int] = set()
    for pid in pids:
        with_fd = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in with_fd.iterdir()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holders.add(pid)
    return holders


def unix_listeners(path: str) -> set[int]:
    """The pids holding a listening unix socket bound at ``path`` (from /proc)."""
    with open("/proc/net/unix") as f:
        next(f)
        inodes = {fields[6] for fields in (line.split() for line in f) if fields[-1] == path}
    holders: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holders.add(int(entry.name))
    return holders


def wait_for(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def scrape_count(url: str, route: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    labels = rf'route="{re.escape(route)}",status="200"'
    pattern = rf"^deskbridge_http_requests_total\{{{labels}\}} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Iterator[Group]:
    tmp = tmp_path_factory.mktemp("processes")
    port = free_port()
    env = clean_env(tmp, port)
    env.update(REDIS_URL=TEST_REDIS_URL, DESKBRIDGE_LOG_FORMAT="text")
    log = tmp / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*DESKBRIDGE, "serve", "--processes", "2"],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    g = Group(proc, f"http://127.0.0.1:{port}", port, log)
    try:
        wait_for("two children", lambda: len(g.children()) == 2)
        wait_for(
            "both children listening",
            lambda: listening_pids(port, list(g.children().values())) == set(g.children().values()),
        )
        yield g
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    assert proc.returncode == 0, log.read_text()
    assert "all serve processes stopped" in log.read_text()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_children_share_one_port(group: Group) -> None:
    pids = group.children()
    assert sorted(pids) == [0, 1]
    assert group.proc.pid not in pids.values()
    # both hold their own listening socket on the same port; the supervisor holds none
    assert listening_pids(group.port, [group.proc.pid, *pids.values()]) == set(pids.values())
    assert httpx.get(f"{group.url}/readyz", timeout=5).status_code == 200


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_scrape_counts_every_child(group: Group) -> None:
    before = scrape_count(group.url, "/healthz")
    sent = 40
    for _ in range(sent):  # a new connection each: the kernel spreads them over both
        assert httpx.get(f"{group.url}/healthz", timeout=5).status_code == 200
    # every scrape, whichever child answers it, sees all of them (40 to one child alone
    # has probability 2**-39)
    for _ in range(6):
        assert scrape_count(group.url, "/healthz") == before + sent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_killed_child_is_restarted(group: Group) -> None:
    counted = scrape_count(group.url, "/healthz")
    old = group.children()
    os.kill(old[1], signal.SIGKILL)
    wait_for("the restart", lambda: group.children().get(1) not in (None, old[1]))
    new = group.children()
    assert new[0] == old[0]
    wait_for("the new child listening", lambda: new[1] in listening_pids(group.port, [new[1]]))
    assert listening_pids(group.port, list(new.values())) == set(new.values())
    text = group.log.read_text()
    assert f"serve process 1 (pid {old[1]}) exited with signal 9" in text
    # the dead child's requests stay in the sums: counters never go back
    assert scrape_count(group.url, "/healthz") == counted
    assert httpx.get(f"{group.url}/readyz", timeout=5).status_code == 200


def test_processes_takes_a_count_or_auto() -> None:
    assert parse_processes("3") == 3
    assert parse_processes("auto") == available_cpus() >= 1
    assert available_cpus() <= len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match="--processes"):
            parse_processes(bad)


def test_worker_refuses_processes(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--processes", "2"])
    assert result.exit_code == 2
    assert "--processes is for run and serve" in result.output


@pytest.mark.slow
def test_a_port_in_use_stops_the_supervisor_before_any_child(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(tmp_path, port)
        env["REDIS_URL"] = TEST_REDIS_URL
        done = subprocess.run(
            [*DESKBRIDGE, "serve", "--processes", "2"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "started (pid" not in err


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_with_processes_shares_one_private_redis(tmp_path: Path) -> None:
    """`run --processes 2` without REDIS_URL: the supervisor starts the private Redis once,
    both children (gateway and worker each) use it, and SIGTERM stops all of it."""
    port = free_port()
    env = clean_env(tmp_path, port)
    env["DESKBRIDGE_LOG_FORMAT"] = "text"
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*DESKBRIDGE, "run", "--processes", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = re.compile(r"run process (\d+) started \(pid (\d+)\)")
    try:
        wait_for("two children", lambda: len(set(started.findall(log.read_text()))) == 2)
        pids = [int(pid) for _, pid in started.findall(log.read_text())]
        wait_for("both listening", lambda: listening_pids(port, pids) == set(pids))
        # each child's /readyz needs its own worker's heartbeat, through the one Redis
        for _ in range(6):
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        sock = str(tmp_path / "data" / "redis" / "redis.sock")
        assert len(unix_listeners(sock)) == 1, "one private redis-server for the group"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "all run processes stopped" in text
    assert text.count("deskbridge 0.1.0: run on") == 1  # the banner once, from child 0
    assert any((tmp_path / "data" / "redis").rglob("*.aof*"))
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
