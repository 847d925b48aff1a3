"""Baseline for bench/track/process.py: the 0.5 s /proc poll that vrrp_track_process used before
(ProcessWatcher, main at 4115b28). Run with that checkout first on the path:

    git worktree add /tmp/tp-base 4115b28
    PYTHONPATH=/tmp/tp-base/src sudo -E .venv/bin/python bench/track/baseline_poll.py 30 20

Arguments: kills, CPU seconds. Prints exit -> count 0 latency and the CPU with 20 specs.
"""
import asyncio, os, signal, statistics, subprocess, sys, time, random
from types import SimpleNamespace
from chimeha.runtime.trackers import ProcessWatcher
print(ProcessWatcher.__module__, sys.modules["chimeha"].__file__)
arg = str(91_000_000 + os.getpid())
async def main():
    st = {"c": None, "at": 0}
    def oc(n, c): st["c"], st["at"] = c, time.perf_counter()
    sp = SimpleNamespace(process=("sleep", arg), param_match=None, full_command=False, quorum=1, quorum_max=None)
    w = ProcessWatcher({"p": sp}, oc); w.start()
    down = []
    for _ in range(int(sys.argv[1])):
        p = subprocess.Popen(["sleep", arg])
        while st["c"] != 1: await asyncio.sleep(0.001)
        await asyncio.sleep(random.uniform(0, 0.5))
        t0 = time.perf_counter(); os.kill(p.pid, signal.SIGKILL); p.wait()
        while st["c"] != 0: await asyncio.sleep(0.0005)
        down.append((st["at"] - t0) * 1000)
    w.stop()
    d = sorted(down); print(f"old exit->down ms: {statistics.median(d):.1f} ({d[0]:.1f}-{d[-1]:.1f})")
    specs = {f"tp{i}": SimpleNamespace(process=("sleep", f"{arg}{i}") if i % 2 else (f"nosuch{i}",), param_match=None,
             full_command=bool(i % 2), quorum=1, quorum_max=None) for i in range(20)}
    w = ProcessWatcher(specs, lambda *a: None); w.start(); await asyncio.sleep(1)
    c0, t0 = time.process_time(), time.monotonic(); await asyncio.sleep(float(sys.argv[2]))
    print(f"old CPU % with 20 specs: {100*(time.process_time()-c0)/(time.monotonic()-t0):.2f}")
    w.stop()
asyncio.run(main())
