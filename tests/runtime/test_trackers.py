"""track_file reading, vrrp_track_process matching, and the file/process pollers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from types import SimpleNamespace

from chimeha.runtime.trackers import (FileWatcher, ProcessWatcher, init_track_file, interface_up,
                                      process_matches, process_quorum_ok, read_track_file)


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


def test_process_matching_is_exact_not_regex():
    assert process_matches(("sshd",), None, False, "sshd", ("/usr/sbin/sshd", "-D"))
    assert not process_matches(("ssh",), None, False, "sshd", ("/usr/sbin/sshd",))
    # parameters must match exactly unless param_match says otherwise
    assert process_matches(("nginx", "-g"), None, False, "nginx", ("/usr/sbin/nginx", "-g"))
    assert not process_matches(("nginx", "-g"), None, False, "nginx", ("/usr/sbin/nginx", "-g", "x"))
    assert process_matches(("nginx", "-g"), "partial", False, "nginx", ("nginx", "-g", "x"))
    assert process_matches(("app", "--conf=/etc"), "initial", False, "app", ("app", "--conf=/etc/app.conf"))
    assert not process_matches(("app", "--conf=/var"), "initial", False, "app", ("app", "--conf=/etc/a"))
    assert process_matches(("python3", "-m", "http.server"), None, True, "python3",
                           ("python3", "-m", "http.server"))


def test_quorum_bounds():
    spec = SimpleNamespace(quorum=2, quorum_max=3)
    assert [process_quorum_ok(spec, n) for n in range(5)] == [False, False, True, True, False]


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


async def test_process_watcher_counts_a_real_process():
    name = "chhatrk" + str(time.monotonic_ns() % 100000)
    spec = SimpleNamespace(process=(name,), param_match=None, full_command=False, quorum=1, quorum_max=None)
    seen = []
    w = ProcessWatcher({"p": spec}, lambda n, c: seen.append(c), poll=0.02)
    w.start()
    # A process whose comm is our unique name: exec python under that argv[0] name via prctl-free trick.
    proc = subprocess.Popen([sys.executable, "-c",
                             f"import ctypes,time; ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 5
        while 1 not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert seen[0] == 0 and 1 in seen
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while seen[-1] != 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    w.stop()
    assert seen[-1] == 0
