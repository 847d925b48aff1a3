"""The core stays sans-I/O: no module under vrrp/, track/ or sim/ imports I/O or a clock."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "chimeha"
FORBIDDEN = {"asyncio", "socket", "subprocess", "time", "select", "selectors", "threading", "os"}
def top_level_imports(path: pathlib.Path) -> set[str]:
    """The top-level package of every absolute import anywhere in the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


FILES = sorted(p for d in ("vrrp", "track", "sim") for p in (SRC / d).glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_io_imports(path):
    found = top_level_imports(path)
    assert not found & FORBIDDEN, f"{path.name} imports {sorted(found & FORBIDDEN)}"
    assert len(path.read_text().splitlines()) < 700


def test_files_found():
    assert {p.name for p in FILES} >= {"packet.py", "instance.py", "timing.py", "segment.py", "weights.py"}


# The config reader and the virtual-server control plane are pure too, except
# that the config reader opens the files it is asked to read (so `os` is allowed
# there). Data-plane backends (lvs/backends/) are adapters and are not listed.
OTHER_PURE = sorted([*(SRC / "config").glob("*.py"), *(SRC / "lvs").glob("*.py"),
                     SRC / "check" / "schedule.py"])
NO_CLOCK_OR_NETWORK = FORBIDDEN - {"os"}


@pytest.mark.parametrize("path", OTHER_PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_and_control_plane_do_no_network_or_clock_io(path):
    found = top_level_imports(path)
    assert not found & NO_CLOCK_OR_NETWORK, f"{path.name} imports {sorted(found & NO_CLOCK_OR_NETWORK)}"
    assert len(path.read_text().splitlines()) < 700
