"""Helpers for net tests: run a Python snippet inside a lab namespace."""

from __future__ import annotations

import json
import sys
import textwrap


def run_py(host, code: str, timeout: float = 20) -> object:
    """Run ``code`` with this interpreter inside ``host``'s namespace; it must print one JSON value last."""
    proc = host.run([sys.executable, "-c", textwrap.dedent(code)], check=False, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snippet failed in {host.name}: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def popen_py(host, code: str, **kw):
    import subprocess

    return host.popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True, **kw)
