"""vrrp_track_process: exit-to-state-change latency, appearance latency, and the monitor's CPU.

Usage: sudo .venv/bin/python bench/track/process.py [--kills 30] [--cpu-seconds 20] [--tracks 20]

Runs chime-ha's ProcessMonitor in this process (no VRRP): each round starts
`sleep ARG` (ARG unique to the run), waits until the track is up, then takes
the time just before os.kill(pid, SIGKILL) and the time the monitor reports
the track down. Both modes: "auto" (the kernel's proc connector for
appearances; needs root in the initial namespaces) and "scan" (one /proc scan
every 0.5 s, as in a node with its own PID namespace). Exits are pidfd events
in both. Then the CPU (time.process_time) of an idle monitor with --tracks
vrrp_track_process entries over --cpu-seconds, per mode, while the machine
does whatever it does (its fork/exec rate is what the connector mode pays for).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from chimeha.runtime import proc_monitor  # noqa: E402
from chimeha.runtime.proc_monitor import ProcessMonitor  # noqa: E402


def spec(name, process):
    return SimpleNamespace(name=name, process=tuple(process), param_match=None, full_command=False, quorum=1,
                           quorum_max=None, delay=0.0, fork_delay=None, terminate_delay=None)


async def latency(mode: str, kills: int, arg: str) -> tuple[list[float], list[float], bool]:
    state = {"ok": None, "at": 0.0}

    def on_change(_n, ok, _d):
        state["ok"], state["at"] = ok, time.perf_counter()

    m = ProcessMonitor({"tp": spec("tp", ("sleep", arg))}, on_change, events=mode)
    m.start()
    down, up = [], []
    try:
        if mode == "auto":
            for _ in range(200):
                if m.connector:
                    break
                await asyncio.sleep(0.01)
        for _ in range(kills):
            await asyncio.sleep(random.uniform(0, proc_monitor.SCAN_INTERVAL))  # any phase of the scan
            t0 = time.perf_counter()
            p = subprocess.Popen(["sleep", arg])
            while state["ok"] is not True:
                await asyncio.sleep(0.0005)
            up.append(state["at"] - t0)
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            os.kill(p.pid, signal.SIGKILL)
            while state["ok"] is not False:
                await asyncio.sleep(0)
            down.append(state["at"] - t0)
            p.wait()
            await asyncio.sleep(0.02)
    finally:
        connector = m.connector
        m.stop()
    return down, up, connector


async def cpu(mode: str, tracks: int, seconds: float, arg: str) -> dict:
    specs = {f"tp{i}": spec(f"tp{i}", ("sleep", f"{arg}{i}") if i % 2 else (f"nosuch{i}",)) for i in range(tracks)}
    # half by command line (reads /proc/PID/cmdline), half by name only
    for i, s in enumerate(specs.values()):
        s.full_command = bool(i % 2)
    m = ProcessMonitor(specs, lambda *a: None, events=mode)
    events = {"n": 0}
    real = m._event
    m._event = lambda what, f: (events.__setitem__("n", events["n"] + 1), real(what, f))
    m.start()
    await asyncio.sleep(1.0)  # past the acknowledgement (or its absence)
    c0, s0, t0 = time.process_time(), m.scans, time.monotonic()
    await asyncio.sleep(seconds)
    c1, s1, t1 = time.process_time(), m.scans, time.monotonic()
    connector = m.connector
    m.stop()
    n0 = time.perf_counter()
    for _ in range(20):
        m._scan()
    per_scan = (time.perf_counter() - n0) / 20
    return {"cpu_pct": 100 * (c1 - c0) / (t1 - t0), "scans": s1 - s0, "events": events["n"],
            "per_scan_ms": per_scan * 1000, "procs": len([e for e in os.listdir("/proc") if e.isdigit()]),
            "connector": connector}


def fmt(xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    return f"{statistics.median(ms):.2f} ({ms[0]:.2f}-{ms[-1]:.2f})"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--cpu-seconds", type=float, default=20.0)
    ap.add_argument("--tracks", type=int, default=20)
    a = ap.parse_args()
    arg = str(90_000_000 + os.getpid())
    print(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs, kernel "
          f"{platform.release()}, Python {platform.python_version()}; scan interval {proc_monitor.SCAN_INTERVAL} s")
    print("\n| mode | kills | exit -> down, ms median (min-max) | start -> up, ms median (min-max) |")
    print("|---|---|---|---|")
    for mode in ("auto", "scan"):
        down, up, connector = await latency(mode, a.kills, arg)
        label = "proc connector" if connector else "scan"
        print(f"| {mode} ({label}) | {a.kills} | {fmt(down)} | {fmt(up)} |")
    print(f"\nIdle monitor, {a.tracks} vrrp_track_process entries, {a.cpu_seconds:g} s:\n")
    print("| mode | CPU % | scans | proc events handled | one scan, ms | /proc entries |")
    print("|---|---|---|---|---|---|")
    for mode in ("auto", "scan"):
        r = await cpu(mode, a.tracks, a.cpu_seconds, arg)
        label = "proc connector" if r["connector"] else "scan"
        print(f"| {mode} ({label}) | {r['cpu_pct']:.2f} | {r['scans']} | {r['events']} | {r['per_scan_ms']:.2f} "
              f"| {r['procs']} |")


if __name__ == "__main__":
    asyncio.run(main())
