"""The core stays sans-I/O: no module under vrrp/, track/ or sim/ imports I/O or a clock."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "chimeha"
FORBIDDEN = {"asyncio", "socket", "subprocess", "time", "select", "selectors", "threading", "os"}
FILES = sorted(p for d in ("vrrp", "track", "sim") for p in (SRC / d).glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_io_imports(path):
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    assert not found & FORBIDDEN, f"{path.name} imports {sorted(found & FORBIDDEN)}"
    assert len(path.read_text().splitlines()) < 700


def test_files_found():
    assert {p.name for p in FILES} >= {"packet.py", "instance.py", "timing.py", "segment.py", "weights.py"}
