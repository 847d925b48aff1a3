"""track_file reading, vrrp_track_process matching, and the file/process pollers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from types import SimpleNamespace

from chimeha.runtime.trackers import FileWatcher, init_track_file, interface_up, read_track_file


def test_read_track_file_values(tmp_path):
    f = tmp_path / "v"
    assert read_track_file(str(f)) == 0  # missing
    for text, want in [("5\n", 5), ("-12 trailing", -12), ("abc", 0), ("", 0), ("7x", 7), ("+3", 3)]:
        f.write_text(text)
        assert read_track_file(str(f)) == want, text


def test_init_track_file_respects_overwrite(tmp_path):
    f = tmp_path / "v"
    init_track_file(str(f), 4, False)
    assert read_track_file(str(f)) == 4
    init_track_file(str(f), 9, False)
    assert read_track_file(str(f)) == 4
    init_track_file(str(f), 9, True)
    assert read_track_file(str(f)) == 9


def test_missing_interface_is_down():
    assert interface_up("nosuchif0") is False
    assert interface_up("lo") in (True, False)


async def test_file_watcher_reports_changes(tmp_path):
    f = tmp_path / "v"
    f.write_text("0")
    seen = []
    w = FileWatcher({"tf": str(f)}, lambda n, v: seen.append((n, v)), poll=0.02)
    w.start()
    try:
        assert seen == [("tf", 0)]
        f.write_text("3")
        deadline = time.monotonic() + 5
        while ("tf", 3) not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert seen == [("tf", 0), ("tf", 3)]
    finally:
        w.stop()
