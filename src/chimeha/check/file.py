"""FILE_CHECK: the number written in a track_file's file (keepalived.conf(5), "Track files").

The file holds a number. With weight 0 (the track_file's, or the checker's
own), 0 is up and anything else down. Otherwise the value times the weight
(negated with ``reverse``) is added to the real server's weight, which the
checker reports when ``dynamic`` is set; the checker is down when that sum is
negative. keepalived documents this rule as not fully implemented for real
servers; this is its plain reading (docs/checkers.md). An unreadable file or
text that is not a number is down.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import FileCheck, TrackFile


def read_value(path: str) -> int:
    """The integer at the start of ``path`` (blank file = 0); ValueError/OSError otherwise."""
    with open(path, "rb") as fh:
        text = fh.read(4096).decode("ascii", "replace").strip()
    if not text:
        return 0
    return int(text.split()[0])


def evaluate(value: int, weight: int, reverse: bool, dynamic: bool, rs_weight: int) -> CheckResult:
    """The pure rule: a file value to a check result."""
    if weight == 0:
        if value == 0:
            return CheckResult(True, "value 0")
        return CheckResult(False, f"value {value} (non-zero with weight 0)")
    delta = value * weight * (-1 if reverse else 1)
    result = rs_weight + delta
    if result < 0:
        return CheckResult(False, f"value {value} x weight {weight} takes the weight to {result}")
    return CheckResult(True, f"value {value}", weight=result if dynamic else None)


class FileSettings(NamedTuple):
    """What FILE_CHECK reads where, merged from the checker and its track_file."""

    path: str
    weight: int
    reverse: bool
    dynamic: bool


def file_settings(checker: FileCheck, tracked: TrackFile) -> FileSettings:
    """The checker's ``weight [reverse]`` if it has one, else the track_file's (and ``dynamic``)."""
    if checker.weight is not None:
        weight, reverse = checker.weight, checker.weight_reverse
    else:
        weight, reverse = tracked.weight, tracked.weight_reverse
    return FileSettings(str(tracked.file), int(weight), bool(reverse), checker.dynamic)


async def probe_file(checker: FileCheck, target: Target, timeout: float) -> CheckResult:
    """Read the tracked file once (in a thread: a file on a hung mount must not block the loop)."""
    name = checker.track_file or ""
    tracked = target.track_files.get(name)
    if tracked is None:
        return CheckResult(False, f"FILE_CHECK: unknown track_file {name!r}")
    if not tracked.file:
        return CheckResult(False, f"FILE_CHECK: track_file {name!r} has no file")
    path, weight, reverse, dynamic = file_settings(checker, tracked)
    try:
        async with asyncio.timeout(timeout):
            value = await asyncio.to_thread(read_value, path)
    except TimeoutError:
        return CheckResult(False, f"{path}: read timed out")
    except (OSError, ValueError) as exc:
        return CheckResult(False, f"{path}: {getattr(exc, 'strerror', None) or exc}")
    res = evaluate(value, weight, reverse, dynamic, target.weight)
    return CheckResult(res.ok, f"{path}: {res.detail}", res.weight)
