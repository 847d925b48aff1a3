"""A control-socket flood against `chime-ha run` under a 1,024-descriptor limit.

The scenario of issue 9 item 7: a daemon with RLIMIT_NOFILE 1024 and one
tracked vrrp_script (interval 1 s, no weight: a failed run means FAULT), and a
client that keeps FLOOD idle root connections open on its control socket for
SECONDS (reconnecting whenever the daemon closes one, as a stuck tool or an
attacker with root would). Measured, per source tree:

* script runs during the flood (expected: about one per second),
* transitions out of MASTER (expected: none),
* status requests answered during the flood (one every 0.5 s, 5 s timeout),
* the daemon's peak descriptor count,
* daemon log lines, of which tracebacks and accept-error lines.

Usage (root): .venv/bin/python bench/control/flood.py [--src SRC_DIR ...] [--seconds 30] [--flood 1100]
Each --src is a chime-ha source tree (its ``src`` directory, e.g. the main
worktree's for "before"); the default is this tree. Lab namespaces only
(chimeha.lab.netns.Topology with a unique tag); nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_SRC = HERE.parents[2] / "src"
sys.path.insert(0, str(DEFAULT_SRC))

from chimeha.lab.netns import Topology  # noqa: E402

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
    advert_int 1
    virtual_ipaddress {{
        192.168.231.10/32
    }}
    track_script {{
        chk_alive
    }}
}}
"""


def request(path: str, cmd: str, timeout: float = 5.0) -> dict | None:
    """One request as a patient client: a full listen backlog (EAGAIN) is retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            while True:
                try:
                    s.connect(path)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.002)
            s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(1 << 20)
                if not chunk:
                    return None
                buf += chunk
            return json.loads(buf.split(b"\n", 1)[0])
    except (OSError, ValueError):
        return None


def connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
        return s
    except OSError:  # backlog full (EAGAIN): try again later
        s.close()
        return None


def run_one(src: Path, seconds: float, flood: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="chimeha-flood-"))
    runs, script = work / "runs", work / "chk.sh"
    script.write_text(f"#!/bin/sh\necho run >> {runs}\nexit 0\n")
    script.chmod(0o755)
    (work / "k.conf").write_text(CONF.format(script=script))
    control = str(work / "control.sock")
    topo = Topology("fl" + uuid.uuid4().hex[:4])
    topo.open()
    socks: list[socket.socket] = []
    try:
        host = topo.add_host("server1", "192.168.231.11/24", ifname="eth0")
        env_code = (f"import sys; sys.path.insert(0, {str(src)!r}); import chimeha; print('code:', chimeha.__file__, "
                    f"file=sys.stderr, flush=True); from chimeha.cli import main; "
                    f"sys.exit(main(['run', '-f', {str(work / 'k.conf')!r}, '--control', {control!r}]))")
        log = open(work / "daemon.log", "wb")
        proc = host.popen([sys.executable, "-c", env_code], stdout=log, stderr=subprocess.STDOUT,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = request(control, "status")
            if st and st.get("ok") and st["result"]["instances"]["VI_1"]["state"] == "MASTER" \
                    and runs.exists():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("daemon did not become MASTER: " + (work / "daemon.log").read_text()[-2000:])
        base_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        runs_before = len(runs.read_text().splitlines())
        log_before = len((work / "daemon.log").read_text(errors="replace").splitlines())
        answered = asked = reconnects = 0
        latencies = []
        peak = base_fds
        t0 = time.monotonic()
        next_status = t0
        while time.monotonic() - t0 < seconds:
            while len(socks) < flood:
                s = connect(control)
                if s is None:
                    break
                socks.append(s)
            # Drop (and later replace) the connections the daemon closed.
            poller = select.poll()
            by_fd = {s.fileno(): s for s in socks}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            for fd, _ev in poller.poll(50):
                s = by_fd[fd]
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    socks.remove(s)
                    s.close()
                    reconnects += 1
            if time.monotonic() >= next_status:
                next_status += 0.5
                asked += 1
                t = time.monotonic()
                if request(control, "status", timeout=5.0):
                    answered += 1
                    latencies.append(time.monotonic() - t)
                try:
                    peak = max(peak, len(os.listdir(f"/proc/{proc.pid}/fd")))
                except OSError:
                    pass
        elapsed = time.monotonic() - t0
        runs_during = len(runs.read_text().splitlines()) - runs_before
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(1.0)
        final = request(control, "journal", timeout=10.0)
        journal = final["result"]["entries"] if final and final.get("ok") else []
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        lines = (work / "daemon.log").read_text(errors="replace").splitlines()[log_before:]
        latencies.sort()
        return {
            "src": str(src), "code": next((x for x in (work / "daemon.log").read_text().splitlines()
                                           if x.startswith("code:")), "?"), "seconds": round(elapsed, 1), "flood": flood,
            "script_runs": runs_during,
            "left_master": sum(1 for e in journal if e.get("kind") == "transition" and e.get("from") == "MASTER"),
            "status_answered": f"{answered}/{asked}",
            "status_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "reconnects": reconnects,
            "fds_base": base_fds, "fds_peak": peak,
            "log_lines": len(lines),
            "tracebacks": sum(1 for x in lines if x.startswith("Traceback")),
            "accept_lines": sum(1 for x in lines if "accept" in x.lower()),
        }
    finally:
        for s in socks:
            s.close()
        topo.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", action="append", type=Path, help="chime-ha src directory (repeatable)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--flood", type=int, default=1100)
    args = p.parse_args()
    for src in args.src or [DEFAULT_SRC]:
        print(json.dumps(run_one(src.resolve(), args.seconds, args.flood)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
