"""`deskbridge --help` answers without importing the application: the group lists each
command from `cli/main.py`'s table and imports a command's module only to run it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

from deskbridge.cli.main import COMMANDS, cli

# what `deskbridge --help` may import beyond the standard library: click and the group
HELP_IMPORTS = {"click", "deskbridge", "deskbridge.cli", "deskbridge.cli.main"}

_PROBE = """
import json, sys
before = set(sys.modules)
sys.argv = ["deskbridge", *json.loads(sys.argv[1])]
from deskbridge.cli.main import main
try:
    main()
except SystemExit:
    pass
new = set(sys.modules) - before
ours = {m for m in new if m.split(".")[0] not in sys.stdlib_module_names}
print(json.dumps(sorted(ours)), file=sys.stderr)
"""


def _imported(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), (), ("--version",)])
def test_help_imports_nothing_but_click_and_the_group(args: tuple[str, ...]) -> None:
    assert {m.split(".")[0] for m in _imported(*args)} <= {"click", "deskbridge"}
    assert {m for m in _imported(*args) if m.startswith("deskbridge")} == {
        m for m in HELP_IMPORTS if m.startswith("deskbridge")
    }


def test_a_command_still_loads_its_module_when_called() -> None:
    imported = _imported("route", "--help")
    assert "deskbridge.cli.route" in imported
    # phone facts import phonenumbers' geodata (0.4 s) when a message needs them, not before
    assert "phonenumbers.geodata" not in imported


@pytest.mark.parametrize("group", ["deliveries", "events", "contacts", "token", "route"])
def test_admin_commands_do_not_import_every_channel_and_desk(group: str) -> None:
    # the adapters and desks cost each command a second; these talk to the admin API
    imported = _imported(group, "--help")
    assert f"deskbridge.cli.{group}" in imported
    assert "deskbridge.adapters.registry" not in imported
    assert "deskbridge.outbound.registry" not in imported


def test_the_listed_help_is_each_commands_own() -> None:
    ctx = click.Context(cli)
    for name, (module, attr, first) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attr)
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == first, name
    assert set(cli.list_commands(ctx)) == set(COMMANDS)
