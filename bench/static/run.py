"""Static rules at scale: chime-ha vs keepalived 2.2.7, start / SIGHUP / stop, in one lab node each.

Each daemon gets ``--rules`` static rules (and one MASTER instance) and is timed:

* start: from the daemon's launch until every rule is in ``ip rule``;
* reload: a SIGHUP with half of the rules replaced, until ``ip rule`` holds exactly the new set;
* stop: from SIGTERM until the last of them is gone.

Polled with ``ip -j rule`` inside the node every 10 ms (a poll costs a few ms: the figures
are +- one poll). As root:

    .venv/bin/python bench/static/run.py --rules 500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))


def conf(first: int, n: int) -> str:
    """Rules ``first`` .. ``first + n - 1`` (preference 1000 + i) beside the scene's lone MASTER instance."""
    from chimeha.lab.static_scene import static_config

    rules = [f"from 10.{100 + i // 250}.{i % 250}.0/24 table {100 + i % 50} preference {1000 + i}"
             for i in range(first, first + n)]
    return static_config(static_rules=rules)


def prios(node) -> set[int]:
    return {r["priority"] for r in json.loads(node.run(["ip", "-j", "-4", "rule"]).stdout)} - {0, 32766, 32767}


def wait_for(node, want: set[int], t0: float, timeout: float = 60.0) -> float:
    while time.monotonic() - t0 < timeout:
        if prios(node) == want:
            return time.monotonic() - t0
        time.sleep(0.01)
    raise RuntimeError(f"timed out; have {len(prios(node))} rules, want {len(want)}")


def one_round(topo, kind: str, n: int, tag: str) -> dict:
    from chimeha.lab.node import add_node
    from chimeha.lab.static_scene import NODE_ADDRESS

    node = add_node(topo, f"{kind[0]}{tag}", NODE_ADDRESS)
    path = "/etc/keepalived/bench.conf"
    node.write_file(path, conf(0, n))
    if kind == "chime-ha":
        cmd = [CHIME_HA, "run", "-f", path, "--log-level", "warning"]
    else:
        cmd = ["keepalived", "-n", "-l", "-D", "-P", "-f", path, "-p", "/run/ka.pid", "-r", "/run/ka-vrrp.pid",
               "-c", "/run/ka-chk.pid"]
    log = open(f"/tmp/bench-static-{kind}.log", "ab")
    t0 = time.monotonic()
    proc = node.popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        out = {"start": wait_for(node, {1000 + i for i in range(n)}, t0)}
        time.sleep(1.0)
        half = n // 2
        node.write_file(path, conf(half, n))  # rules [half, half+n): the first half goes, a new half comes
        pid = node.run(["pgrep", "-o", "-f", cmd[0] if kind == "chime-ha" else "keepalived"]).stdout.split()[0]
        t0 = time.monotonic()
        node.run(["kill", "-HUP", pid])
        out["reload"] = wait_for(node, {1000 + i for i in range(half, half + n)}, t0)
        time.sleep(0.5)
        t0 = time.monotonic()
        node.run(["kill", "-TERM", pid])
        out["stop"] = wait_for(node, set(), t0)
        return out
    finally:
        node.stop(proc, grace=10)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    from chimeha.lab.netns import Topology

    results: dict = {"chime-ha": [], "keepalived": []}
    for r in range(args.rounds):
        for kind in ("chime-ha", "keepalived"):  # taking turns, round after round
            topo = Topology("bs")
            topo.open()
            try:
                results[kind].append(one_round(topo, kind, args.rules, str(r)))
            finally:
                topo.close()
    print(f"{args.rules} static rules, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}; "
          "seconds, median (min-max)")
    print("| step | keepalived | chime-ha |\n|---|---|---|")
    for step in ("start", "reload", "stop"):
        cells = []
        for kind in ("keepalived", "chime-ha"):
            xs = [x[step] for x in results[kind]]
            cells.append(f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        print(f"| {step} | {cells[0]} | {cells[1]} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
