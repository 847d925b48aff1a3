"""CPU cost of TCP_CHECK for many real servers at delay_loop 1.

Starts a separate listener process (its CPU is not ours) with N listening
sockets on loopback, one port each, that accept and close; then runs N
CheckerRunners (TCP_CHECK, delay_loop 1, default warmup = delay_loop, so the
probes are spread over each second) in this process and measures this
process's CPU time (user+sys, time.process_time) over wall time.

    .venv/bin/python bench/checkers/bench_tcp.py --servers 1000 --seconds 30 [--uvloop]

Prints one JSON line. Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time

LISTENER = r"""
import selectors, socket, sys
n = int(sys.argv[1])
sel = selectors.DefaultSelector()
ports = []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)), flush=True)
while True:
    for key, _ in sel.select():
        try:
            c, _ = key.fileobj.accept()
            c.close()
        except BlockingIOError:
            pass
"""


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run(servers: int, seconds: float, warm: float, delay_loop: float) -> dict:
    from chimeha.check import CheckerRunner, Target
    from chimeha.check.spec import resolve_timing
    from chimeha.config.model import TcpCheck

    proc = subprocess.Popen([sys.executable, "-c", LISTENER, str(servers)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        ports = [int(p) for p in proc.stdout.readline().split()]
        assert len(ports) == servers, "listener failed to start"
        changes = []
        chk = TcpCheck(delay_loop=delay_loop)
        timing = resolve_timing(chk)
        runners = [CheckerRunner(chk, Target("127.0.0.1", p), changes.append, timing=timing) for p in ports]
        for r in runners:
            r.start()
        await asyncio.sleep(warm)
        probes0 = sum(r.schedule.probes for r in runners)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        probes1 = sum(r.schedule.probes for r in runners)
        up = sum(r.up for r in runners)
        failed = [r.last_result.detail for r in runners if r.last_result and not r.last_result.ok][:3]
        await asyncio.gather(*(r.stop() for r in runners))
    finally:
        proc.kill()
        proc.wait()
    wall = wall1 - wall0
    return {
        "servers": servers, "delay_loop": delay_loop, "seconds": round(wall, 2),
        "cpu_s": round(cpu1 - cpu0, 3), "user_s": round(ru1.ru_utime - ru0.ru_utime, 3),
        "sys_s": round(ru1.ru_stime - ru0.ru_stime, 3), "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / wall, 1),
        "probes_per_s": round((probes1 - probes0) / wall, 1), "up": up, "transitions": len(changes),
        "sample_failures": failed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warm", type=float, default=3.0, help="seconds before measuring (warmup spread)")
    ap.add_argument("--delay-loop", type=float, default=1.0)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    raise_nofile(4 * args.servers + 256)
    if args.uvloop:
        import uvloop
        runner = uvloop.run
    else:
        runner = asyncio.run
    res = runner(run(args.servers, args.seconds, args.warm, args.delay_loop))
    res["loop"] = "uvloop" if args.uvloop else "asyncio"
    res["python"] = platform.python_version()
    res["cpus"] = os.cpu_count()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
