"""Fast failure detection: which scripts are understood, and early runs on real process exits."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys

import pytest

from chimeha.runtime.fast_detect import (FastDetector, PortProbe, ProcessProbe, listening_inodes,
                                         matching_pids, pids_for, probe_for, socket_owners)
from chimeha.runtime.scripts import ScriptTracker


@pytest.mark.parametrize("argv,want", [
    (("/usr/bin/pgrep", "chime-server"), ProcessProbe("chime-server")),
    (("pgrep", "-x", "nginx"), ProcessProbe("nginx", exact=True)),
    (("pgrep", "-f", "-u", "www", "gunicorn.*app"), ProcessProbe("gunicorn.*app", full=True)),
    (("pgrep", "-fx", "/usr/sbin/haproxy -f /etc/haproxy.cfg"),
     ProcessProbe("/usr/sbin/haproxy -f /etc/haproxy.cfg", full=True, exact=True)),
    (("/bin/pidof", "haproxy"), ProcessProbe("haproxy", regex=False)),
    (("killall", "-0", "haproxy"), ProcessProbe("haproxy", regex=False)),
    (("/bin/sh", "-c", "pgrep -x haproxy"), ProcessProbe("haproxy", exact=True)),
    (("nc", "-zv", "localhost", "8801"), PortProbe(8801)),
    (("/bin/nc", "-z", "-w", "2", "127.0.0.1", "80"), PortProbe(80)),
    (("curl", "-fs", "http://localhost:8080/health"), PortProbe(8080)),
    (("curl", "-k", "https://[::1]/"), PortProbe(443)),
    (("wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"), PortProbe(80)),
])
def test_understood_scripts(argv, want):
    assert probe_for(argv) == want


@pytest.mark.parametrize("argv", [
    ("/etc/keepalived/check.sh",),
    ("pgrep", "a", "b"),  # pgrep takes one pattern: not ours to guess
    ("nc", "-zv", "10.0.0.5", "8801"),  # a remote port: its closing is not seen here
    ("curl", "http://example.com/"),
    ("/bin/sh", "-c", "pgrep nginx || exit 1"),  # shell logic: the script's own business
    ("pidof", "a", "b"),  # any of two names
    ("killall", "haproxy"),  # not -0: it would kill
    ("pgrep", "("),  # not a regex
    (),
])
def test_not_understood_scripts_stay_on_their_interval(argv):
    assert probe_for(argv) is None


def _unique_program(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nwhile :; do sleep 0.2; done\n")
    path.chmod(0o755)
    return str(path)


def test_matching_pids_follows_pgreps_rules(tmp_path):
    prog = _unique_program(tmp_path, "chimeha-fdtst1")
    p = subprocess.Popen([prog])
    try:
        for _ in range(50):  # the shell has exec'd: its comm is the script's name
            if matching_pids(ProcessProbe("chimeha-fdtst1", exact=True)):
                break
            import time
            time.sleep(0.02)
        assert matching_pids(ProcessProbe("chimeha-fdtst1", exact=True)) == {p.pid}
        assert matching_pids(ProcessProbe("fdtst", exact=False)) >= {p.pid}
        assert p.pid not in matching_pids(ProcessProbe("fdtst", exact=True))
        assert p.pid in matching_pids(ProcessProbe("chimeha-fdtst1", regex=False))
        assert p.pid in matching_pids(ProcessProbe(f"sh {prog}", full=True))
        out = subprocess.run(["pgrep", "-x", "chimeha-fdtst1"], capture_output=True, text=True).stdout.split()
        assert [int(x) for x in out] == [p.pid]  # the real pgrep agrees
    finally:
        p.kill()
        p.wait()


def test_listener_owner_is_found_from_the_socket_inode():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        inodes = listening_inodes(port)
        assert inodes == {os.fstat(srv.fileno()).st_ino}
        assert socket_owners(inodes) == {os.getpid()}
        assert pids_for(PortProbe(port), exclude=frozenset({os.getpid()})) == set()
    finally:
        srv.close()
    assert listening_inodes(port) == set()


async def _wait(cond, timeout):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_an_exit_runs_the_check_at_once_and_the_script_decides(tmp_path):
    prog = _unique_program(tmp_path, "chimeha-fdtst2")
    svc = subprocess.Popen([prog])
    changes = []
    # interval 60: without fast detection the failure would be seen a minute later
    tr = ScriptTracker("chk", (shutil.which("pgrep"), "-x", "chimeha-fdtst2"), interval=60, timeout=10,
                       on_change=lambda n, ok, res: changes.append(ok))
    fd = FastDetector({"chk": tr})
    fd.start()
    try:
        assert await _wait(lambda: matching_pids(ProcessProbe("chimeha-fdtst2", exact=True)), 5)
        tr.start()
        assert await _wait(lambda: fd.watched()["chk"]["pids"] == [svc.pid], 5), fd.watched()
        assert tr.runs == 1 and tr.state.ok
        svc.kill()
        svc.wait()
        assert await _wait(lambda: changes == [False], 10), (changes, tr.runs)
        assert tr.runs == 2 and tr.woken == 1 and fd.watched()["chk"]["wakes"] == 1
        assert fd.watched()["chk"]["pids"] == []  # FAILED: nothing watched until it succeeds again
    finally:
        await tr.stop()
        fd.stop()
        if svc.poll() is None:
            svc.kill()
            svc.wait()


async def test_one_of_two_exiting_is_not_yet_a_change(tmp_path):
    prog = _unique_program(tmp_path, "chimeha-fdtst3")
    a, b = subprocess.Popen([prog]), subprocess.Popen([prog])
    tr = ScriptTracker("chk", (shutil.which("pgrep"), "-x", "chimeha-fdtst3"), interval=60, timeout=10)
    fd = FastDetector([tr])
    fd.start()
    try:
        assert await _wait(lambda: len(matching_pids(ProcessProbe("chimeha-fdtst3", exact=True))) == 2, 5)
        tr.start()
        assert await _wait(lambda: fd.watched()["chk"]["pids"] == sorted([a.pid, b.pid]), 5)
        a.kill()
        a.wait()
        assert await _wait(lambda: fd.watched()["chk"]["pids"] == [b.pid], 5)
        await asyncio.sleep(0.2)
        assert tr.runs == 1 and tr.woken == 0  # b still answers: no early run
        b.kill()
        b.wait()
        assert await _wait(lambda: tr.runs == 2, 10)
        assert not tr.state.ok
    finally:
        await tr.stop()
        fd.stop()
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()


async def test_a_closed_local_port_runs_an_nc_check_at_once():
    code = ("import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            "s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)")
    svc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    port = int(svc.stdout.readline())
    changes = []
    tr = ScriptTracker("port", (shutil.which("nc"), "-z", "127.0.0.1", str(port)), interval=60, timeout=10,
                       on_change=lambda n, ok, res: changes.append(ok))
    fd = FastDetector([tr])
    fd.start()
    try:
        tr.start()
        assert await _wait(lambda: fd.watched()["port"]["pids"] == [svc.pid], 5), fd.watched()
        svc.kill()
        svc.wait()
        assert await _wait(lambda: changes == [False], 10)
        assert tr.runs == 2
    finally:
        await tr.stop()
        fd.stop()
        if svc.poll() is None:
            svc.kill()
            svc.wait()


async def test_switched_off_nothing_is_watched(tmp_path):
    tr = ScriptTracker("chk", ("pgrep", "-x", "whatever"), interval=60)
    fd = FastDetector([tr], enabled=False)
    fd.start()
    assert fd.watched() == {} and tr.result_hooks == []
