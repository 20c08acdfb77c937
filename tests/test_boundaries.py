"""Guards on the package's shape (issue 15): what may import what, where keys are built.

Each guard walks ``src/deskbridge`` with ``ast``, so a violation names its file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "deskbridge"
STORE = SRC / "store"
KEY_PREFIXES = ("db:{", "deskbridge:")
# a key segment follows the prefix at once ("deskbridge: a gateway ..." is prose)
KEY_START = re.compile(r"^(db:\{|deskbridge:[\w{*])")


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _outside_store() -> Iterator[tuple[Path, ast.Module]]:
    for path, tree in _modules():
        if STORE not in path.parents:
            yield path, tree


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every module name an import statement names (``from a import b``: ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node, node.module
            for alias in node.names:
                yield node, f"{node.module}.{alias.name}"


def test_only_the_store_imports_redis() -> None:
    found = [
        f"{_where(path, node)} imports {name}"
        for path, tree in _outside_store()
        for node, name in _imports(tree)
        if name == "redis" or name.startswith("redis.")
    ]
    assert found == [], "Redis is the store's business (store/connection.py hands out the rest)"


def test_only_the_store_builds_keys() -> None:
    found = [
        f"{_where(path, node)} imports {name}"
        for path, tree in _outside_store()
        for node, name in _imports(tree)
        if name == "deskbridge.store.keys" or name.startswith("deskbridge.store.keys.")
    ]
    assert found == [], "ask a store method instead of building a key"


def _leading_text(node: ast.AST) -> str | None:
    """The literal text a string constant or f-string starts with."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def test_key_strings_are_written_only_in_store_keys() -> None:
    found = []
    for path, tree in _modules():
        if path == STORE / "keys.py":
            continue
        for node in ast.walk(tree):
            text = _leading_text(node)
            if text is not None and KEY_START.match(text):
                found.append(f"{_where(path, node)}: {text[:40]!r}")
    assert found == [], "key names are built in store/keys.py only"


def test_the_guards_see_what_they_guard() -> None:
    """A walk that found nothing would pass every guard above."""
    store_modules = [p for p, _ in _modules() if STORE in p.parents]
    assert (STORE / "keys.py") in store_modules
    assert any(p.name == "tasks.py" for p, _ in _outside_store())
    keys_text = (STORE / "keys.py").read_text()
    assert all(prefix in keys_text for prefix in KEY_PREFIXES)


# The layering of docs/architecture.md ("The parts"): each part and what it may import.
# Parts are the packages under src/deskbridge and the top-level modules beside them.
FOUNDATION = {
    "errors",
    "schemas",
    "identity",
    "logs",
    "metrics",
    "policy",
    "http",
    "http_transport",
    "deskbridge",
}
LAYERS: dict[str, set[str]] = {
    **{part: FOUNDATION for part in FOUNDATION},
    "routing": FOUNDATION,
    "config": FOUNDATION | {"routing"},
    "adapters": FOUNDATION | {"routing", "config"},
    # desks use the adapters' shared protocols (TokenCache) and the JSON body guard
    "outbound": FOUNDATION | {"routing", "config", "adapters"},
    "store": FOUNDATION,
    "flows": FOUNDATION | {"routing", "config", "adapters", "outbound", "store"},
    "pipeline": FOUNDATION | {"routing", "config", "adapters", "outbound", "store", "flows"},
    "gateway": FOUNDATION | {"routing", "config", "adapters", "outbound", "store", "flows"},
    "listeners": FOUNDATION | {"routing", "config", "adapters", "outbound", "store", "flows"},
    "cli": FOUNDATION
    | {
        "routing",
        "config",
        "adapters",
        "outbound",
        "store",
        "flows",
        "pipeline",
        "gateway",
        "listeners",
    },
    "__main__": {"cli"},
}


def _part(module: str) -> str:
    """``deskbridge.flows.ingest`` -> ``flows``; ``deskbridge`` -> ``deskbridge``."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else bits[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_every_part_has_a_place_in_the_layering() -> None:
    parts = {_part(_module_of(path)) for path, _ in _modules()}
    assert parts - LAYERS.keys() == set(), "a new part needs a row in LAYERS and the docs"


def test_imports_follow_the_layering() -> None:
    found = []
    for path, tree in _modules():
        own = _part(_module_of(path))
        for node, name in _imports(tree):
            if name.split(".")[0] != "deskbridge":
                continue
            target = _part(name)
            if target not in LAYERS:
                target = "deskbridge"  # `from deskbridge import __version__`
            if target != own and target not in LAYERS[own]:
                found.append(f"{_where(path, node)}: {own} imports {name}")
    assert found == [], "see the layering in docs/architecture.md"
