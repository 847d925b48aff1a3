"""Helpers for the packaging tests: build the wheel and the .deb of this checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(outdir: Path) -> Path:
    """`python -m build --wheel` of this checkout into ``outdir``; returns the wheel's path."""
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = sorted(outdir.glob("chimeha-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def runtime_pins(wheel: Path) -> list[str]:
    """The wheel's non-extra requirements at the versions requirements.lock pins (``name==ver``)."""
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = [ln.split(":", 1)[1].strip() for ln in z.read(meta).decode().splitlines()
                if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            pinned[norm(name)] = f"{name.strip()}=={ver.strip()}"
    names = [norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs]
    missing = [n for n in names if n not in pinned]
    assert not missing, f"requirements.lock pins no version of {missing}"
    return sorted(pinned[n] for n in names)
