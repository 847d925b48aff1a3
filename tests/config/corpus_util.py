"""Reading the expectations written inside corpus configs.

A corpus config marks each diagnostic it must produce with a trailing comment
on the offending line: ``# expect: SEVERITY CODE``.  A header line
``# keepalived: differs CODE`` marks a documented difference from
``keepalived -t`` (see docs/config.md), excluded from the agreement test.
"""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
_EXPECT = re.compile(r"#\s*expect:\s*(error|warning)\s+([a-z0-9-]+)")
_DIFFERS = re.compile(r"^#\s*keepalived:\s*differs\s+(\S+)", re.M)


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.conf"))


def expectations(path: Path) -> set[tuple[int, str, str]]:
    """{(line, severity, code)} declared in the file."""
    out = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for m in _EXPECT.finditer(line):
            out.add((n, m.group(1), m.group(2)))
    return out


def documented_difference(path: Path) -> str | None:
    m = _DIFFERS.search(path.read_text())
    return m.group(1) if m else None
