"""vrrp_track_process with real processes: exits by pidfd, appearances by one shared scan or the proc connector.

Every process here is started by the test and killed by its PID. Without root
the monitor scans /proc; the ``system`` tests need root for the kernel's
process events connector (initial namespaces).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from chimeha.runtime import proc_monitor
from chimeha.runtime.proc_monitor import ProcessMonitor, listen_request, parse_proc_event, read_process

# A parent that forks a copy of itself on SIGUSR1 (printing the child's PID) and
# execs into `sleep` on SIGUSR2.
FORKER = """
import os, signal, sys, time
def fork(*_):
    pid = os.fork()
    if pid:
        print(pid, flush=True)
def become_sleep(*_):
    os.execv("/bin/sleep", ["sleep", "3600"])
signal.signal(signal.SIGUSR1, fork)
signal.signal(signal.SIGUSR2, become_sleep)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def tag() -> str:
    """A number no other process on the machine has as its argument."""
    return str(7_000_000 + (time.monotonic_ns() // 1000) % 3_000_000)


def spec(name: str, process, **kw):
    d = dict(param_match=None, full_command=False, quorum=1, quorum_max=None, delay=0.0,
             fork_delay=None, terminate_delay=None)
    d.update(kw)
    return SimpleNamespace(name=name, process=tuple(process), **d)


class Procs:
    """Processes started by the test; every one is killed by PID at the end."""

    def __init__(self):
        self.popen: list[subprocess.Popen] = []
        self.pids: set[int] = set()

    def sleep(self, arg: str) -> subprocess.Popen:
        p = subprocess.Popen(["sleep", arg])
        self.popen.append(p)
        return p

    def forker(self, arg: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", FORKER, arg], stdout=subprocess.PIPE, text=True)
        self.popen.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    def fork(self, parent: subprocess.Popen) -> int:
        parent.send_signal(signal.SIGUSR1)
        child = int(parent.stdout.readline())
        self.pids.add(child)
        return child

    def close(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.popen:
            p.kill()
            p.wait()


@pytest.fixture
def procs():
    p = Procs()
    try:
        yield p
    finally:
        p.close()


def exited(pid: int) -> None:
    """Block until ``pid`` (our child) has exited, without reaping it."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def until(cond, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def one_turn() -> None:
    """Let the loop run its ready callbacks and poll its readers once or twice."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_read_process_skips_zombies_and_reads_comm_with_parentheses(tmp_path):
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "stat").write_bytes(b"5 (a) b)) S 1 5 5 0")
    (tmp_path / "5" / "cmdline").write_bytes(b"a\0x\0")
    assert read_process(str(tmp_path), 5, True) == ("a) b)", b"a\0x\0", 1)
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "stat").write_bytes(b"6 (z) Z 1 6 6 0")
    assert read_process(str(tmp_path), 6, False) is None
    assert read_process(str(tmp_path), 7, False) is None


def test_proc_events_are_parsed_and_the_listen_request_is_well_formed():
    req = listen_request()
    assert len(req) == 40 and int.from_bytes(req[:4], "little") == 40
    head = (52).to_bytes(4, "little") + bytes(12) + (1).to_bytes(4, "little") * 2 + bytes(12)
    fork = head[:36] + (1).to_bytes(4, "little") + bytes(12) + b"".join(
        n.to_bytes(4, "little") for n in (10, 10, 11, 11))
    assert parse_proc_event(fork) == (1, (10, 10, 11, 11))
    comm = head[:36] + (0x200).to_bytes(4, "little") + bytes(12) + (9).to_bytes(4, "little") * 2 + b"web\0" + bytes(12)
    assert parse_proc_event(comm) == (0x200, (9, 9, "web"))
    other = head[:16] + (2).to_bytes(4, "little") + head[20:]
    assert parse_proc_event(other + bytes(16)) is None  # not the proc connector
    assert parse_proc_event(b"short") is None


async def test_an_exit_is_reported_by_its_pidfd_without_any_scan(procs):
    t = tag()
    seen = []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t))}, lambda n, ok, d: seen.append((ok, d)),
                       events="scan", scan_interval=3600)
    a, b = procs.sleep(t), procs.sleep(t)
    await asyncio.sleep(0.05)  # both have exec'd sleep
    m.start()
    try:
        assert seen == [(True, "recovered (2 processes, quorum 1)")]
        scans = m.scans
        a.kill()
        exited(a.pid)
        await one_turn()
        assert seen == [(True, "recovered (2 processes, quorum 1)")]  # one left: still a quorum
        b.kill()
        exited(b.pid)
        await one_turn()
        assert seen[-1] == (False, "failed (0 processes, quorum 1)")
        assert m.scans == scans  # nothing was rescanned: the pidfd told
    finally:
        m.stop()


async def test_terminate_delay_hides_a_restart_and_holds_a_loss(procs):
    t = tag()
    seen = []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t), terminate_delay=0.3)},
                       lambda n, ok, d: seen.append(ok), events="scan", scan_interval=0.02)
    a = procs.sleep(t)
    await asyncio.sleep(0.05)
    m.start()
    try:
        assert seen == [True]
        a.kill()
        exited(a.pid)
        await until(lambda: m.status()["tp"]["pending"] == "terminate", "the terminate timer")
        procs.sleep(t)  # restarted within terminate_delay: the scan finds it, the loss never shows
        await until(lambda: m.status()["tp"]["pending"] is None, "the restart")
        await asyncio.sleep(0.4)
        assert seen == [True]
        for p in procs.popen:
            p.kill()
        await until(lambda: seen == [True, False], "the held loss")
    finally:
        m.stop()


async def test_an_appearance_by_exec_is_found_by_the_scan_at_once(procs):
    t = tag()
    seen = []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t), fork_delay=5.0)}, lambda n, ok, d: seen.append(ok),
                       events="scan", scan_interval=0.02)
    m.start()
    try:
        assert seen == [False]
        procs.sleep(t)
        await until(lambda: seen == [False, True], "the new process")  # fork_delay is for forks only
    finally:
        m.stop()


async def test_a_fork_of_a_counted_process_is_up_after_fork_delay_in_scan_mode(procs):
    await _fork_delay(procs, "scan")


async def _fork_delay(procs, events: str) -> ProcessMonitor:
    t = tag()
    seen = []
    m = ProcessMonitor({"tp": spec("tp", (sys.executable, "-c", FORKER, t), quorum=2, fork_delay=0.3)},
                       lambda n, ok, d: seen.append((asyncio.get_running_loop().time(), ok)),
                       events=events, scan_interval=0.02)
    parent = procs.forker(t)
    m.start()
    try:
        assert [ok for _, ok in seen] == [False]  # 1 < quorum 2
        if events == "auto":
            await until(lambda: m.connector, "the kernel's acknowledgement")
        child = procs.fork(parent)
        await until(lambda: child in m.status()["tp"]["pids"], "the child counted")
        assert m.status()["tp"]["pending"] == "fork"
        counted_at = asyncio.get_running_loop().time()
        assert [ok for _, ok in seen] == [False]
        await until(lambda: seen[-1][1] is True, "up after fork_delay")
        assert seen[-1][0] - counted_at >= 0.3 - 0.05  # the timer does not fire before fork_delay
        os.kill(child, signal.SIGKILL)
        await until(lambda: seen[-1][1] is False, "the child's exit")
    finally:
        m.stop()
    return m


async def test_50_tracks_share_one_scan(procs, monkeypatch):
    t = tag()
    me = procs.sleep(t)
    listings, reads = [], []
    real_list, real_read = proc_monitor._list_pids, proc_monitor.read_process
    monkeypatch.setattr(proc_monitor, "_list_pids", lambda p: listings.append(p) or real_list(p))

    def counting_read(proc, pid, cmdline):
        if int(pid) == me.pid:
            reads.append(pid)
        return real_read(proc, pid, cmdline)

    monkeypatch.setattr(proc_monitor, "read_process", counting_read)
    await asyncio.sleep(0.05)
    specs = {f"tp{i}": spec(f"tp{i}", ("sleep", t) if i % 2 else ("sleep",), full_command=bool(i % 3))
             for i in range(50)}
    seen = {}
    m = ProcessMonitor(specs, lambda n, ok, d: seen.__setitem__(n, ok), events="scan", scan_interval=0.02)
    m.start()
    try:
        await until(lambda: m.scans >= 5, "five scans")
    finally:
        m.stop()
    assert len(listings) == m.scans  # one listing of /proc per scan, whatever the number of tracks
    assert len(reads) == m.scans  # and each process is read once per scan
    assert all(seen.values()) and len(seen) == 50


@pytest.mark.system
async def test_with_the_proc_connector_appearances_need_no_scan(procs):
    t = tag()
    seen = []
    code = f"import ctypes,signal,time; signal.signal(10, lambda *a: ctypes.CDLL(None).prctl(15, b'ch{t}', 0, 0, 0));" \
           " print('ready', flush=True); time.sleep(3600)"
    specs = {"byname": spec("byname", (f"ch{t}",)), "sleep": spec("sleep", ("sleep", t))}
    m = ProcessMonitor(specs, lambda n, ok, d: seen.append((n, ok)), scan_interval=3600)
    m.start()
    try:
        await until(lambda: m.connector, "the kernel's acknowledgement")
        scans = m.scans
        s = procs.sleep(t)  # fork + exec: the exec event finds it
        await until(lambda: ("sleep", True) in seen, "the exec event")
        renamer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.popen.append(renamer)
        assert renamer.stdout.readline().strip() == "ready"
        renamer.send_signal(signal.SIGUSR1)  # prctl(PR_SET_NAME): a comm event
        await until(lambda: ("byname", True) in seen, "the comm event")
        s.kill()
        await until(lambda: seen[-1] == ("sleep", False), "the exit")
        assert m.scans == scans  # only the scan answering the acknowledgement ran
        assert m.status()["sleep"]["source"] == "proc-connector"
    finally:
        m.stop()


@pytest.mark.system
async def test_with_the_proc_connector_a_fork_is_up_after_fork_delay(procs):
    m = await _fork_delay(procs, "auto")
    assert m.connector


@pytest.mark.system
async def test_with_the_proc_connector_an_exec_away_is_noticed_at_once(procs):
    t = tag()
    seen = []
    m = ProcessMonitor({"tp": spec("tp", (sys.executable, "-c", FORKER, t), terminate_delay=30)},
                       lambda n, ok, d: seen.append(ok), scan_interval=3600)
    parent = procs.forker(t)
    m.start()
    try:
        await until(lambda: m.connector, "the kernel's acknowledgement")
        assert seen == [True]
        parent.send_signal(signal.SIGUSR2)  # execs into sleep: no longer a match, not an exit
        await until(lambda: seen == [True, False], "the exec event")  # terminate_delay does not apply
    finally:
        m.stop()


@pytest.mark.system
async def test_the_socket_filter_keeps_exits_and_threads_away(procs):
    t = tag()
    whats, forks = [], []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t))}, lambda *a: None, scan_interval=3600)
    real = m._event

    def record(what, f):
        whats.append(what)
        if what == 1:
            forks.append(f)
        real(what, f)

    m._event = record
    m.start()
    try:
        await until(lambda: m.connector, "the kernel's acknowledgement")
        threads = subprocess.Popen([sys.executable, "-c", "import threading; t = threading.Thread(target=print);"
                                    " t.start(); t.join()"])
        procs.popen.append(threads)
        for _ in range(3):
            p = procs.sleep(t)
            await until(lambda: p.pid in m.status()["tp"]["pids"], "the sleep counted")
            p.kill()
            p.wait()
        threads.wait()
        await one_turn()
    finally:
        m.stop()
    assert whats and set(whats) <= {0, 0x1, 0x2, 0x200}  # never an exit (0x80000000) or a uid change
    assert all(f[2] == f[3] for f in forks)  # never a thread


async def test_a_proc_that_cannot_be_listed_concludes_nothing(procs, monkeypatch):
    t = tag()
    procs.sleep(t)
    await asyncio.sleep(0.05)
    seen = []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t))}, lambda n, ok, d: seen.append(ok), events="scan",
                       scan_interval=0.02)
    m.start()
    try:
        def broken(_proc):
            raise PermissionError("no /proc")

        monkeypatch.setattr(proc_monitor, "_list_pids", broken)
        scans = m.scans
        await until(lambda: m.scans >= scans + 3, "three failed scans")
        assert seen == [True] and len(m.status()["tp"]["pids"]) == 1
    finally:
        m.stop()


async def test_lost_process_events_resynchronise_with_one_scan(procs):
    import errno

    t = tag()
    procs.sleep(t)
    await asyncio.sleep(0.05)
    seen = []
    m = ProcessMonitor({"tp": spec("tp", ("sleep", t), quorum=2)}, lambda n, ok, d: seen.append(ok),
                       events="scan", scan_interval=3600)
    m.start()

    class Overrun:
        calls = 0

        def recvfrom(self, _n):
            Overrun.calls += 1
            if Overrun.calls == 1:
                raise OSError(errno.ENOBUFS, "No buffer space available")
            raise BlockingIOError

    try:
        assert seen == [False]
        procs.sleep(t)  # its exec event was among the lost ones
        await asyncio.sleep(0.05)
        m.connector, m._sock = True, Overrun()
        scans = m.scans
        m._readable()
        assert m.scans == scans + 1 and seen == [False, True]
    finally:
        m._sock = None
        m.stop()
