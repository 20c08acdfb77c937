"""The event loop of run/serve/worker: uvloop when installed, asyncio on request."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop
from click.testing import CliRunner

from deskbridge.cli.loop import loop_factory, runner
from deskbridge.cli.main import cli
from deskbridge.config.settings import Settings
from deskbridge.errors import ConfigError, bind_failed


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_auto_takes_uvloop_when_installed() -> None:
    name, factory = loop_factory("auto")
    assert name == "uvloop"
    assert factory is uvloop.new_event_loop
    with runner("auto") as r:
        assert r.run(_loop_type()) is uvloop.Loop


def test_asyncio_keeps_the_standard_loop() -> None:
    name, _ = loop_factory("asyncio")
    assert name == "asyncio"
    with runner("asyncio") as r:
        loop_type = r.run(_loop_type())
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory("auto")[0] == "asyncio"
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKBRIDGE_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("DESKBRIDGE_EVENT_LOOP", "tokio")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output
    assert "event_loop" in result.output


def test_a_busy_port_is_named_on_either_loop() -> None:
    """uvloop keeps the errno only on the error's cause ("could not bind to local_addr")."""
    busy = OSError(98, "Address already in use")
    try:
        raise OSError("could not bind to local_addr ('127.0.0.1', 5060)") from busy
    except OSError as raised:
        uv = raised
    for err in (busy, uv):
        assert str(bind_failed("sip", "127.0.0.1:5060", err)).startswith(
            "sip port 127.0.0.1:5060: Address already in use"
        )
    assert "no such thing" in str(bind_failed("sip", "x", OSError("no such thing")))
