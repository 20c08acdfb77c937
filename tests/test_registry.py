"""The channel and desk registries are the only hand-kept lists of channels and desks."""

from __future__ import annotations

import ast
from pathlib import Path

from deskbridge.adapters.registry import CHANNELS
from deskbridge.outbound.registry import DESKS
from deskbridge.schemas import Channel, Desk

SRC = Path(__file__).resolve().parent.parent / "src" / "deskbridge"
NAMES = {c.value for c in Channel} | {d.value for d in Desk}
MEMBERS = {"Channel", "Desk"}

# where naming every channel or desk by hand is the point
ALLOWED = {
    "schemas/common.py",  # the enums
    "adapters/registry.py",
    "outbound/registry.py",
}
# the sandbox's stand-ins for platform HTTP APIs are aiohttp handlers: gateway code, which
# channel packages may not import, so the gateway keeps their table (docs/extending.md)
ALLOWED_NAMES = {("gateway/sandbox.py", "_STAND_INS")}


def _name_of(node: ast.expr) -> str | None:
    """The channel or desk a literal element names: "telegram" or Channel.TELEGRAM."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in MEMBERS
        and node.attr.lower() in NAMES
    ):
        return node.attr.lower()
    return None


def _elements(node: ast.AST) -> list[ast.expr] | None:
    """The elements of a list/tuple/set/dict literal, a ``Literal[...]`` or a
    ``click.Choice(...)``; None for anything else."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return list(node.elts)
    if isinstance(node, ast.Dict):
        return [k for k in node.keys if k is not None]
    if isinstance(node, ast.Subscript):
        base = node.value
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if name == "Literal":
            inner = node.slice
            return list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "Choice" and node.args:
            return _elements(node.args[0])
    return None


def hand_kept_lists(
    source: str, allowed: frozenset[str] = frozenset()
) -> list[tuple[int, list[str]]]:
    """Each literal in ``source`` that names two or more channels or desks: (line, names);
    the values assigned to the module-level names in ``allowed`` are skipped."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for stmt in tree.body:
        value: ast.expr | None = None
        names: list[ast.expr] = []
        if isinstance(stmt, ast.AnnAssign):
            names, value = [stmt.target], stmt.value
        elif isinstance(stmt, ast.Assign):
            names, value = stmt.targets, stmt.value
        if value is not None and any(isinstance(n, ast.Name) and n.id in allowed for n in names):
            skip.update(id(n) for n in ast.walk(value))
    found: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.expr):
            continue
        elements = _elements(node)
        if elements is None:
            continue
        named = [n for n in map(_name_of, elements) if n is not None]
        if len(set(named)) >= 2:
            # a Literal's or a Choice's own tuple or list is the same finding
            skip.update(id(n) for n in ast.walk(node))
            found.append((node.lineno, named))
    return sorted(found)


def test_no_hand_kept_list_of_channels_or_desks_in_src() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in ALLOWED:
            continue
        allowed = frozenset(name for file, name in ALLOWED_NAMES if file == rel)
        for line, names in hand_kept_lists(path.read_text(), allowed):
            offenders.append(f"{rel}:{line}: {names}")
    assert offenders == [], (
        "derive these from adapters/registry.py CHANNELS or outbound/registry.py DESKS:\n"
        + "\n".join(offenders)
    )


def test_the_scan_finds_what_it_is_meant_to_find() -> None:
    source = """
A = ["telegram", "line"]
B = ("zendesk", "udesk")
C = {Channel.SIP: 1, Channel.EMAIL: 2}
D: Literal["whatsapp", "messenger"]
E = click.Choice(["sandbox", "intercom"])
F = ["telegram"]
G = ("email", "phone")
"""
    assert [line for line, _ in hand_kept_lists(source)] == [2, 3, 4, 5, 6]


def test_the_registries_cover_every_channel_and_desk() -> None:
    assert list(CHANNELS) == list(Channel)
    assert list(DESKS) == list(Desk)
    for channel, spec in CHANNELS.items():
        assert spec.channel is channel
        assert spec.config.model_fields["type"].default == channel.value
    for desk, desk_spec in DESKS.items():
        assert desk_spec.desk is desk
        assert desk_spec.config.model_fields["type"].default == desk.value
