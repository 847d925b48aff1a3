"""runtime/fast_detect.py's watcher with a fake /proc and a fake tracker around real child processes.

tests/parity/test_fast_detect.py covers the probe parsing and real pgrep runs; these cover the
watch bookkeeping: what a failed result, a refused script, a kernel without pidfd and stop() do.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
from types import SimpleNamespace

import pytest
from rtfakes import until

from chimeha.runtime import fast_detect
from chimeha.runtime.fast_detect import FastDetector


class Tracker:
    def __init__(self, name="chk", argv=("pgrep", "-x", "svcx"), refused=None):
        self.name, self.argv, self.refused = name, tuple(argv), refused
        self.result_hooks: list = []
        self.wakes = 0

    def wake(self):
        self.wakes += 1


def fake_proc(tmp_path, pids_names: dict[int, str]):
    """A /proc with the given pid -> comm entries (pids are real, so pidfd_open works on them)."""
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    for pid, name in pids_names.items():
        d = proc / str(pid)
        d.mkdir(exist_ok=True)
        (d / "comm").write_text(name + "\n")
        (d / "cmdline").write_bytes(name.encode() + b"\0")
    (proc / "self").mkdir(exist_ok=True)  # not a pid: ignored
    return str(proc)


OK = SimpleNamespace(ok=True)
FAILED = SimpleNamespace(ok=False)


@pytest.fixture
def children():
    procs = []

    def spawn():
        p = subprocess.Popen(["sleep", "30"])
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


async def test_the_last_watched_exit_wakes_the_tracker_once(tmp_path, children):
    a, b = children(), children()
    tr = Tracker()
    fd = FastDetector([tr], proc=fake_proc(tmp_path, {a.pid: "svcx", b.pid: "svcx", os.getpid(): "svcx"}))
    fd.start()
    try:
        tr.result_hooks[0](OK)
        assert fd.watched() == {"chk": {"probe": "process 'svcx'", "pids": sorted([a.pid, b.pid]), "wakes": 0}}
        a.kill()
        a.wait()
        await asyncio.sleep(0.2)
        assert tr.wakes == 0  # b still answers the check
        b.kill()
        b.wait()
        await until(lambda: tr.wakes == 1, 5, "the wake")
        assert fd.watched()["chk"] == {"probe": "process 'svcx'", "pids": [], "wakes": 1}
    finally:
        fd.stop()


async def test_a_failed_result_stops_watching_and_a_success_rescans(tmp_path, children):
    a = children()
    proc = fake_proc(tmp_path, {a.pid: "svcx"})
    tr = Tracker()
    fd = FastDetector([tr], proc=proc)
    fd.start()
    try:
        tr.result_hooks[0](OK)
        assert fd.watched()["chk"]["pids"] == [a.pid]
        tr.result_hooks[0](FAILED)  # already "down": nothing to hurry
        assert fd.watched()["chk"]["pids"] == []
        a.kill()
        a.wait()
        await asyncio.sleep(0.2)
        assert tr.wakes == 0  # its pidfd was closed with the watch
        b = children()
        fake_proc(tmp_path, {b.pid: "svcx"})
        tr.result_hooks[0](OK)  # the service is back: the next success finds it
        assert b.pid in fd.watched()["chk"]["pids"]
    finally:
        fd.stop()


async def test_a_success_while_watching_does_not_rescan(tmp_path, children, monkeypatch):
    a = children()
    tr = Tracker()
    fd = FastDetector([tr], proc=fake_proc(tmp_path, {a.pid: "svcx"}))
    fd.start()
    scans = []
    real = fast_detect.pids_for
    monkeypatch.setattr(fast_detect, "pids_for", lambda *args: scans.append(1) or real(*args))
    try:
        for _ in range(5):
            tr.result_hooks[0](OK)
        assert len(scans) == 1  # the /proc scan cost does not grow with the check rate
    finally:
        fd.stop()


def test_refused_not_understood_or_disabled_scripts_are_not_watched():
    trackers = [Tracker("refused", refused="chk.sh is writable by everyone"),
                Tracker("opaque", argv=("/etc/keepalived/check.sh",)), Tracker("fine")]
    fd = FastDetector(trackers)
    assert list(fd.watched()) == ["fine"]
    assert FastDetector([Tracker()], enabled=False).watched() == {}


async def test_no_pidfd_support_turns_fast_detection_off_for_that_script(tmp_path, children, monkeypatch, caplog):
    a = children()
    tr = Tracker()
    fd = FastDetector([tr], proc=fake_proc(tmp_path, {a.pid: "svcx"}))
    fd.start()

    def enosys(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fast_detect.os, "pidfd_open", enosys)
    with caplog.at_level(logging.INFO, logger="chimeha.runtime.fast_detect"):
        tr.result_hooks[0](OK)
    assert fd.watched() == {} and "fast detection off for vrrp_script chk" in caplog.text
    tr.result_hooks[0](OK)  # later results of that script are ignored, not errors


async def test_a_process_gone_between_scan_and_pidfd_is_skipped(tmp_path, children):
    a = children()
    a.kill()
    a.wait()  # its pid is free now, but the fake /proc still lists it
    b = children()
    tr = Tracker()
    fd = FastDetector([tr], proc=fake_proc(tmp_path, {a.pid: "svcx", b.pid: "svcx"}))
    fd.start()
    try:
        tr.result_hooks[0](OK)
        assert fd.watched()["chk"]["pids"] == [b.pid]
    finally:
        fd.stop()


async def test_stop_closes_every_pidfd(tmp_path, children):
    a = children()
    tr = Tracker()
    fd = FastDetector([tr], proc=fake_proc(tmp_path, {a.pid: "svcx"}))
    fd.start()
    tr.result_hooks[0](OK)
    before = set(os.listdir("/proc/self/fd"))
    fd.stop()
    after = set(os.listdir("/proc/self/fd"))
    assert len(before - after) == 1 and fd.watched() == {}
    a.kill()
    a.wait()
    await asyncio.sleep(0.1)
    assert tr.wakes == 0
    tr.result_hooks[0](OK)  # a result after stop finds no watch: no new pidfd
    assert set(os.listdir("/proc/self/fd")) == after
