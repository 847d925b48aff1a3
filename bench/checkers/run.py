"""Health checkers at scale: chime-ha's checker engine against HAProxy, same listeners, same run.

One listener process (its CPU is nobody's) opens N listening sockets on
127.0.0.1, one port per real server, and counts accepted connections: in
``--mode tcp`` it accepts and closes; in ``--mode http`` it reads the request
and answers ``HTTP/1.0 200 OK`` with a 2-byte body. Then, in alternating
rounds, each checker daemon probes all N ports once a second:

* ``haproxy``: /usr/sbin/haproxy -db, one thread, a backend of N servers
  ``check inter 1000`` (``--mode http`` adds ``option httpchk GET /``), no
  frontend, no traffic.
* ``chime@DIR``: a Python process running chime-ha's checker engine
  (``RealServerMonitor`` per real server: TCP_CHECK, or HTTP_GET url ``/``
  status 200; ``delay_loop 1``, default warmup) with ``DIR`` first on
  ``sys.path`` (``--src src --src /work/main/src`` compares a branch with main).

Everything runs in a network namespace of its own (the script re-executes
itself under ``unshare -n``; needs root), so the namespace's TCP
``ActiveOpens`` counter counts exactly the probes' connect()s. For each round,
after ``--warm`` seconds: the daemon's CPU (utime+stime of /proc/PID/stat, all
threads) over ``--seconds`` of wall time, the probes per second (ActiveOpens)
and the listener's accepted connections per second over the same window (the
proof that each daemon really probes N times a second). HAProxy's connect-only
TCP check answers the SYN-ACK with a RST instead of the final ACK, so in
``--mode tcp`` the listener never accepts its probes: ActiveOpens counts them. Prints one JSON line per round, then
a JSON summary with medians per daemon.

    .venv/bin/python bench/checkers/run.py --mode tcp --servers 1000 --seconds 20 --rounds 3
    .venv/bin/python bench/checkers/run.py --mode http --servers 200 --seconds 20 --rounds 3

Only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LISTENER = r"""
import select, socket, sys
n, http = int(sys.argv[1]), sys.argv[2] == "http"
RESP = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
ep = select.epoll()
lfds, conns, ports = {}, {}, []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    lfds[s.fileno()] = s
    ep.register(s.fileno(), select.EPOLLIN)
    ports.append(s.getsockname()[1])
ep.register(0, select.EPOLLIN)
print(" ".join(map(str, ports)), flush=True)
accepted = 0
while True:
    for fd, ev in ep.poll():
        if fd == 0:
            line = sys.stdin.readline()
            if not line:
                raise SystemExit(0)
            print(accepted, flush=True)
            continue
        s = lfds.get(fd)
        if s is not None:
            while True:
                try:
                    c, _ = s.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    break
                accepted += 1
                if not http:
                    c.close()
                    continue
                c.setblocking(False)
                conns[c.fileno()] = [c, b""]
                ep.register(c.fileno(), select.EPOLLIN)
            continue
        c, buf = conns[fd]
        try:
            data = c.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        buf += data
        if data and b"\r\n\r\n" not in buf:
            conns[fd][1] = buf
            continue
        if data:
            try:
                c.send(RESP)
            except OSError:
                pass
        ep.unregister(fd)
        del conns[fd]
        c.close()
"""

CHIME = r"""
import asyncio, resource, sys
sys.path.insert(0, sys.argv[1])
mode, ports = sys.argv[2], [int(p) for p in sys.argv[3].split(",")]
import chimeha
from chimeha.check import RealServerMonitor, Target
from chimeha.check.spec import resolve_timing
from chimeha.config.model import HttpCheck, HttpUrl, TcpCheck
assert chimeha.__file__.startswith(sys.argv[1]), chimeha.__file__
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * len(ports) + 256)), hard))
chk = TcpCheck(delay_loop=1) if mode == "tcp" else HttpCheck(delay_loop=1, urls=(HttpUrl(path="/", status_code=("200",)),))
timing = resolve_timing(chk)

async def main():
    changes = []
    mons = [RealServerMonitor([chk], Target("127.0.0.1", p), lambda *a: changes.append(a), timings=[timing])
            for p in ports]
    for m in mons:
        m.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    up = sum(m.up for m in mons)
    print(f"{up} {len(changes)}", flush=True)

asyncio.run(main())
"""


def haproxy_cfg(mode: str, ports: list[int]) -> str:
    lines = ["global", "    nbthread 1", "    maxconn 4000", "defaults", "    mode tcp" if mode == "tcp" else "    mode http",
             "    timeout connect 5s", "    timeout check 5s", "    timeout client 5s", "    timeout server 5s",
             "frontend idle", f"    bind 127.0.0.1:{free_port()}", "    default_backend rs",  # haproxy needs a listener
             "backend rs"]
    if mode == "http":
        lines.append("    option httpchk GET /")
    lines += [f"    server s{i} 127.0.0.1:{p} check inter 1000" for i, p in enumerate(ports)]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process, all threads, in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def syns_sent() -> int:
    """TCP ActiveOpens of this network namespace: every connect() a probe made."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def accepted(listener: subprocess.Popen) -> int:
    listener.stdin.write("count\n")
    listener.stdin.flush()
    return int(listener.stdout.readline())


def start_daemon(name: str, mode: str, ports: list[int], tmp: str) -> subprocess.Popen:
    if name == "haproxy":
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_cfg(mode, ports))
        return subprocess.Popen(["/usr/sbin/haproxy", "-db", "-q", "-f", cfg], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    src = os.path.abspath(name.split("@", 1)[1])
    proc = subprocess.Popen([sys.executable, "-c", CHIME, src, mode, ",".join(map(str, ports))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{name} did not start")
    return proc


def one_round(name: str, mode: str, ports: list[int], listener: subprocess.Popen, warm: float, seconds: float,
              tmp: str) -> dict:
    proc = start_daemon(name, mode, ports, tmp)
    hz = os.sysconf("SC_CLK_TCK")
    try:
        time.sleep(warm)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        load0 = os.getloadavg()[0]
        s0, a0, c0, t0 = syns_sent(), accepted(listener), cpu_ticks(proc.pid), time.monotonic()
        time.sleep(seconds)
        s1, a1, c1, t1 = syns_sent(), accepted(listener), cpu_ticks(proc.pid), time.monotonic()
        state = ""
        if proc.stdin is not None:
            proc.stdin.write("\n")
            proc.stdin.flush()
            state = proc.stdout.readline().strip()
    finally:
        proc.kill()  # only the daemon this round started
        proc.wait()
    wall = t1 - t0
    user, system = (c1[0] - c0[0]) / hz, (c1[1] - c0[1]) / hz
    out = {"daemon": name, "mode": mode, "servers": len(ports), "wall_s": round(wall, 2),
           "cpu_s": round(user + system, 2), "cpu_percent": round(100 * (user + system) / wall, 1),
           "user_percent": round(100 * user / wall, 1), "sys_percent": round(100 * system / wall, 1),
           "probes_per_s": round((s1 - s0) / wall, 1), "accepted_per_s": round((a1 - a0) / wall, 1), "load1": round(load0, 2)}
    if state:
        up, changes = state.split()
        out["up"], out["transitions"] = int(up), int(changes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("tcp", "http"), default="tcp")
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warm", type=float, default=3.0, help="seconds before measuring (warmup spread)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--src", action="append", default=None,
                    help="a chime-ha source dir to measure (repeat to compare); default: this tree's src")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_netns:
        if os.geteuid() != 0:
            raise SystemExit("run.py needs root: it runs in its own network namespace (unshare -n) so that the "
                             "namespace's TCP counters count only the probes")
        os.execvp("unshare", ["unshare", "-n", sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--in-netns"])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.servers + 256)), hard))
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    daemons = ([] if args.no_haproxy else ["haproxy"]) + [f"chime@{s}" for s in (args.src or [os.path.join(here, "src")])]
    listener = subprocess.Popen([sys.executable, "-c", LISTENER, str(args.servers), args.mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    rows = []
    try:
        ports = [int(p) for p in listener.stdout.readline().split()]
        assert len(ports) == args.servers, "listener failed to start"
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = daemons if r % 2 == 0 else daemons[::-1]  # alternate who goes first
                for name in order:
                    row = one_round(name, args.mode, ports, listener, args.warm, args.seconds, tmp)
                    row["round"] = r + 1
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        listener.kill()
        listener.wait()
    summary: dict = {"mode": args.mode, "servers": args.servers, "seconds": args.seconds, "rounds": args.rounds,
                     "python": platform.python_version(), "cpus": os.cpu_count(),
                     "haproxy": subprocess.run(["/usr/sbin/haproxy", "-v"], capture_output=True, text=True)
                     .stdout.split("\n")[0]}
    for name in daemons:
        mine = [r for r in rows if r["daemon"] == name]
        summary[name] = {"cpu_percent_median": statistics.median(r["cpu_percent"] for r in mine),
                         "cpu_percent_all": [r["cpu_percent"] for r in mine],
                         "user_percent_median": statistics.median(r["user_percent"] for r in mine),
                         "sys_percent_median": statistics.median(r["sys_percent"] for r in mine),
                         "probes_per_s_median": statistics.median(r["probes_per_s"] for r in mine)}
    if "haproxy" in daemons:
        base = summary["haproxy"]["cpu_percent_median"]
        for name in daemons[1:]:
            summary[name]["x_haproxy"] = round(summary[name]["cpu_percent_median"] / base, 2) if base else None
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
