"""What the wheel ships: the package with its type marker, and the licence text."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_licence_and_the_type_marker(tmp_path: Path) -> None:
    # the real build backend, offline: the same files `pip install .` would get
    built = list(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    assert len(built) == 1
    with zipfile.ZipFile(built[0]) as wheel:
        names = wheel.namelist()
        licences = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licences, names
        text = wheel.read(licences[0]).decode()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: Apache-2.0" in wheel.read(metadata).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "deskbridge/py.typed" in names
    assert "deskbridge/cli/main.py" in names
    # the Docker build context lets the licence in by name
    assert "!LICENSE*" in (ROOT / ".dockerignore").read_text().splitlines()
