"""A real daemon under a control-socket flood (root: a lab namespace, the real `chime-ha run`).

The measured bug: 1,100 idle root connections under a 1,024-descriptor limit
starved the track script, failed the node over and logged 37,000 accept
tracebacks in 30 s. Here the same flood hits `chime-ha run` started with
RLIMIT_NOFILE 1024 and a tracked script: the script keeps running, the node
stays MASTER, status answers during the flood, idle connections are closed
and the log stays short.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chimeha.observe.control import ControlClient, ControlError

pytestmark = pytest.mark.system

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))
FLOOD = 1100
LIMIT = 1024

CONF = """\
vrrp_script chk_alive {{
    script "{script}"
    interval 1
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 200
    version 3
    advert_int 0.5
    virtual_ipaddress {{
        192.168.231.10/32
    }}
    track_script {{
        chk_alive
    }}
}}
"""


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (ControlError, OSError, KeyError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def _connect_when_queued(path: str) -> socket.socket:
    """Connect as a blocking client would: wait while the listen backlog is full (EAGAIN)."""
    deadline = time.monotonic() + 10
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_connection_flood_under_a_1024_descriptor_limit_starves_nothing(topology, tmp_path):
    runs = tmp_path / "runs"
    script = tmp_path / "chk_alive.sh"
    script.write_text(f"#!/bin/sh\necho run >> {runs}\nexit 0\n")
    script.chmod(0o755)
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF.format(script=script))
    control = str(tmp_path / "control.sock")
    host = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    logf = open(tmp_path / "daemon.log", "wb")
    proc = host.popen([CHIME_HA, "run", "-f", str(conf), "--control", control, "--journal", str(tmp_path / "j.jsonl")],
                      stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_nofile)
    logf.close()
    client = ControlClient(control, timeout=5)
    flood: list[socket.socket] = []
    try:
        _wait(lambda: client.status()["instances"]["VI_1"]["state"] == "MASTER", 20, "VI_1 MASTER")
        _wait(lambda: client.status()["scripts"]["chk_alive"]["result"] == "ok", 10, "chk_alive ok")
        base_fds = _fds(proc.pid)
        runs_before = _runs(runs)
        t0 = time.monotonic()
        peak = base_fds
        for i in range(FLOOD):
            flood.append(_connect_when_queued(control))
            if i % 100 == 0:
                peak = max(peak, _fds(proc.pid))
        flood_seconds = time.monotonic() - t0
        # During the flood (1,100 sockets held open by us): status answers, nothing failed over.
        status = client.status()
        peak = max(peak, _fds(proc.pid))
        assert status["instances"]["VI_1"]["state"] == "MASTER", status["instances"]["VI_1"]
        assert status["scripts"]["chk_alive"]["result"] == "ok"
        # The connections beyond the cap were closed: the daemon holds at most 64 of them.
        assert peak <= base_fds + 64 + 8, (base_fds, peak)
        # The tracked script keeps running every second while the flood's sockets stay open.
        time.sleep(3.5)
        assert _runs(runs) >= runs_before + 3, (runs_before, _runs(runs))
        # Every idle connection is closed by the daemon (5 s without a request): each one reads EOF.
        time.sleep(2.5)
        for s in flood:
            s.settimeout(5)
            while s.recv(65536):
                pass
        _wait(lambda: _fds(proc.pid) <= base_fds + 2, 10, "the daemon's descriptors back to the base")
        assert client.status()["instances"]["VI_1"]["state"] == "MASTER"
        journal = client.journal(limit=100)
        assert [e["to"] for e in journal if e["kind"] == "transition"] == ["BACKUP", "MASTER"], journal
        print(f"flood of {FLOOD} connections took {flood_seconds:.2f} s; daemon fds base {base_fds}, peak {peak}")
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert len([x for x in log.splitlines() if "control" in x]) < 10, log[-4000:]
    assert len(log.splitlines()) < 60, log[-4000:]
